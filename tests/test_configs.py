"""Typed edit configs: `Literal` fields are checked when a config is built, before any model work."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from workbench.edits import get_method, methods
from workbench.edits.registry import EditConfig, fit_edit


def test_every_method_config_builds_with_its_defaults():
    for name in methods():
        cfg = get_method(name).config_cls()
        assert type(cfg).from_dict(cfg.to_dict()) == cfg


def test_literal_typo_fails_before_the_model_is_touched():
    # model=None, concept=None: the config is built first, so the typo is the error
    with pytest.raises(ValueError, match=r"AblateConfig: mode='zeroo' is not one of 'zero', 'noise', 'mean', 'needle' "
                                         r"\(did you mean 'zero'\?\)"):
        fit_edit("ablate", None, None, mode="zeroo")
    with pytest.raises(ValueError, match=r"WagleConfig: loss='NPO'"):
        get_method("wagle").config_cls.from_dict({"loss": "NPO"})
    assert get_method("wagle").config_cls.from_dict({"loss": "ga"}).loss == "ga"


@dataclass
class _Cfg(EditConfig):
    kind: Literal["a", "b"] = "a"
    maybe: Literal["x"] | None = None
    free: str = "anything"


@dataclass
class _Child(_Cfg):
    seen: int = 0

    def __post_init__(self):          # its own hook does not switch the check off
        self.seen += 1


def test_literal_check_covers_optional_and_subclasses():
    assert _Cfg(kind="b", maybe="x", free="zzz").kind == "b"
    assert _Cfg(maybe=None).maybe is None
    with pytest.raises(ValueError, match=r"_Cfg: maybe='y' is not one of 'x', None"):
        _Cfg(maybe="y")
    with pytest.raises(ValueError, match=r"_Child: kind='c'"):
        _Child(kind="c")
    assert _Child(kind="b").seen == 1
    with pytest.raises(ValueError, match=r"kind=1 is not one of"):   # types matter: 1 is not '1'
        _Cfg(kind=1)


def test_cli_reports_a_mistyped_hyper_parameter_without_loading_the_model(capsys):
    from workbench.cli import main
    rc = main(["edit", "ablate", "no-such-model-anywhere", "--concepts", "builtin", "--concept", "Japan",
               "--out", "unused.patch", "--set", "mode=zeroo"])
    err = capsys.readouterr().err
    assert rc == 2 and "mode='zeroo' is not one of 'zero', 'noise', 'mean'" in err, err
    assert err.count("\n") == 1
