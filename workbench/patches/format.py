"""The edit-patch format (docs/patch.md): a directory, or a `.zip` of one, holding `manifest.json`
and `tensors.safetensors`.

The tensors file stores each TensorDelta's payload under `"{i}.{field}"` (`0.A`, `0.B`, `1.indices`,
…) in raw HF weight coordinates; the manifest says what they mean, fingerprints every tensor the
patch touches as it was *before* the edit (`fingerprints`) and as it is *after* it
(`patched_fingerprints`, so a patched checkpoint can be recognised before it is reverted), and
carries a sha256 of the tensors file. Reading a patch only ever parses JSON and safetensors: no
pickle, no code, no member is ever extracted.

Checksums. `tensors_sha256` is the sha256 of the tensors file. `checksum` (version 2) covers the
manifest and the tensors together: `{"version": 2, "covers": "manifest+tensors", "sha256": H}`
with H = sha256(`b"workbench-patch-checksum-v2\n"` + the canonical JSON of the manifest without
its `checksum` key: keys sorted, separators `(",", ":")`, ASCII only). The manifest holds
`tensors_sha256`, so H covers the tensors too. Patches written before version 2 have no
`checksum`: they are still read, and reported as "manifest not covered". A checksum detects
damage and naive tampering; it is not a signature (anyone can recompute it).

Hostile input. The manifest is strict JSON (no NaN / Infinity, no duplicate keys, at most
`MAX_JSON_DEPTH` levels, at most `MAX_MANIFEST_BYTES`); every number in it must be finite;
`method`, tensor names, tensor keys and sites must match strict patterns, free text (`concept`,
`base_model`) may hold no control characters, and no string from a patch ever becomes part of a
path. The tensors file may be no larger than the manifest's declared shapes allow (and than
`max_patch_bytes()`, `WORKBENCH_MAX_PATCH_BYTES`, default 4 GiB); zip members are checked
against that bound before they are inflated. Every floating tensor must be finite. Symlinks
inside a patch folder are refused. A hook patch must fingerprint at least one base tensor, and
one that names a sae-lens `release` (a hub download) is refused unless `WORKBENCH_ALLOW_HUB=1`.

Fingerprint (`tensor_fingerprint`, defined in `workbench.fingerprint`): the hex sha256 of the ASCII header
`"{dtype}:{d0,d1,...}\\n"` (dtype as torch names it without `torch.`, e.g. `float32:576,1536\\n`;
an empty dim list for a scalar) followed by the tensor's raw bytes, taken from the CPU,
C-contiguous copy of the tensor in native (little-endian) byte order.

The code is split by stage: `core` (constants, errors, strict JSON, `Patch`), `save`, `validate`,
`read`; this module re-exports their public names.
"""
from __future__ import annotations

from workbench.fingerprint import dtype_name, file_sha256, tensor_fingerprint  # noqa: F401 (re-exported)
from workbench.patches.core import (  # noqa: F401 (the format's public names, in one place)
    CHECKSUM_VERSION,
    DEFAULT_MAX_PATCH_BYTES,
    MANIFEST,
    MAX_JSON_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_ZIP_MEMBERS,
    Patch,
    PatchError,
    PatchLimitError,
    SCHEMA_VERSION,
    TENSORS,
    canonical_json,
    first_non_finite,
    json_depth,
    manifest_checksum,
    max_patch_bytes,
    strict_json)
from workbench.patches.save import (  # noqa: F401 (the format's public names, in one place)
    build_manifest,
    check_patch_target,
    save_patch)
from workbench.patches.validate import (  # noqa: F401 (the format's public names, in one place)
    validate_manifest)
from workbench.patches.read import (  # noqa: F401 (the format's public names, in one place)
    ChecksumStatus,
    as_patch,
    checksum_status,
    load_patch,
    payload_bound,
    read_manifest)
