"""The facts table behind `analyses/build_suite.py`: relations (templates per form) and entities.

A relation holds the templates of one kind of fact, with `{s}` for the subject and `{a}` for the
answer: `stmt` (sentence prefixes the answer completes), `q` (questions), `para` (paraphrased
prefixes), `syn` (synonym paraphrases), `rev` (reverse queries whose answer is the SUBJECT),
`blank` (a sentence with a ___ blank, ORT fill-in-the-blank), `role` (who is asked in role-play),
`pool` (extra wrong options for multiple choice). A template ending in '?' is asked as
"Question: ...\\nAnswer:".

An entity is (kind, facts, reverse answers): facts map a relation to acceptable answers (the
first is the one scored and shown as the correct option); reverse answers are the strings that
count as naming the entity in a reverse query (default: the subject and, for people, the surname).
"""
from __future__ import annotations

R = {
    # ---------------------------------------------------------------- countries
    "capital": dict(
        stmt=["The capital of {s} is", "The capital city of {s} is"],
        q=["What is the capital of {s}?", "Which city is the capital of {s}?"],
        para=["{s}'s capital city is", "The city that serves as the capital of {s} is"],
        syn=["The seat of government of {s} is in the city of", "The chief city and capital of {s} is called",
             "Which city is the seat of government of {s}?"],
        rev=["{a} is the capital city of the country of", "Question: {a} is the capital of which country?\nAnswer:"],
        blank=["___ is the capital of {s}.", "The capital of {s}, ___, is its largest city."],
        role="geography teacher", pool=["Madrid", "Lisbon", "Vienna", "Oslo"]),
    "language": dict(
        stmt=["The official language of {s} is", "The main language spoken in {s} is"],
        q=["What language is spoken in {s}?", "What is the official language of {s}?"],
        para=["People in {s} mostly speak", "Most people who live in {s} speak the language called"],
        syn=["The national tongue of {s} is", "The chief tongue spoken by the people of {s} is",
             "Which tongue do the people of {s} speak?"],
        rev=["The country where most people speak {a} and the capital is {c} is",
             "Question: {a} is the main language of which country?\nAnswer:"],
        blank=["___ is the official language of {s}.", "In {s}, people speak ___ at home and at work."],
        role="language teacher", pool=["Swedish", "Dutch", "Polish", "Korean"]),
    "currency": dict(
        stmt=["The currency of {s} is the", "The official currency of {s} is the"],
        q=["What is the currency of {s}?", "What money is used in {s}?"],
        para=["In {s}, people pay for things with the", "The money used in {s} is called the"],
        syn=["The legal tender of {s} is the", "The national money of {s} is the",
             "What is the legal tender of {s}?"],
        rev=[], blank=["The ___ is the official currency of {s}.", "In {s} you pay in ___."],
        role="economics teacher", pool=["dollar", "franc", "peso", "rupee"]),
    "continent": dict(
        stmt=["{s} is located on the continent of", "{s} is a place on the continent of"],
        q=["On which continent is {s}?", "Which continent is {s} in?"],
        para=["{s} can be found on the continent of", "To visit {s}, you travel to the continent of"],
        syn=["{s} is situated on the continent of", "{s} lies on the landmass called",
             "On which landmass does {s} lie?"],
        rev=[], blank=["{s} is located in ___.", "{s} is on the continent of ___."],
        role="geography teacher", pool=["Europe", "Asia", "Africa", "South America", "Australia"]),
    # ---------------------------------------------------------------- landmarks / natural places
    "city": dict(
        stmt=["The {s} is located in the city of", "The {s} stands in the city of"],
        q=["In which city is the {s}?", "Which city is the {s} in?"],
        para=["Tourists who want to see the {s} travel to the city of",
              "The {s}, the famous landmark, can be found in"],
        syn=["The {s} is situated in the city of", "The famous {s} rises above the city of",
             "In which city is the {s} situated?"],
        rev=["The most famous landmark of {a} is the",
             "Question: What is the most famous landmark in {a}?\nAnswer: The"],
        blank=["The {s} is in ___.", "The {s} is a famous landmark in the city of ___."],
        role="tour guide", pool=["Madrid", "Vienna", "Tokyo", "Cairo", "Sydney"]),
    "country": dict(
        stmt=["The {s} is located in the country of", "The {s} is in the country of"],
        q=["In which country is the {s}?", "Which country is the {s} in?"],
        para=["To see the {s}, tourists travel to the country of", "The {s} is a famous landmark in the country of"],
        syn=["The {s} is situated in the nation of", "The {s} can be found in the nation of",
             "In which nation is the {s} situated?"],
        rev=[], blank=["The {s} is in ___.", "The {s} is a famous sight in the country of ___."],
        role="tour guide", pool=["Spain", "Brazil", "Canada", "Mexico"]),
    "place_country": dict(
        stmt=["{s} is located in the country of", "{s} is in the country of"],
        q=["In which country is {s}?", "Which country is {s} in?"],
        para=["To see {s}, tourists travel to the country of", "{s} is a famous place in the country of"],
        syn=["{s} is situated in the nation of", "{s} can be found in the nation of",
             "In which nation is {s} situated?"],
        rev=[], blank=["{s} is in ___.", "{s} is a famous place in the country of ___."],
        role="tour guide", pool=["Spain", "Brazil", "Canada", "Mexico", "Peru"]),
    "range": dict(
        stmt=["{s} is part of the mountain range called the", "{s} is in the"],
        q=["Which mountain range is {s} in?", "What mountain range is {s} part of?"],
        para=["{s} is one of the peaks of the", "{s} belongs to the mountain range known as the"],
        syn=["{s} is a summit of the", "{s} is found in the mountain chain called the",
             "In which mountain chain is {s}?"],
        rev=[], blank=["{s} is in the ___ mountains.", "The ___ mountain range contains {s}."],
        role="geography teacher", pool=["Alps", "Andes", "Rockies", "Pyrenees"]),
    "tallest": dict(
        stmt=["{s} is the tallest mountain in the", "{s} is the highest mountain in the"],
        q=["{s} is the tallest mountain where?", "Of what is {s} the highest mountain?"],
        para=["No mountain is taller than {s} anywhere in the", "{s} is higher than every other mountain in the"],
        syn=["{s} is the loftiest peak in the", "{s} is the highest summit on the planet, the tallest in the",
             "{s} is the loftiest peak where?"],
        rev=["The tallest mountain in the world is", "The highest mountain on Earth is",
             "Question: What is the tallest mountain in the world?\nAnswer:",
             "Question: What is the highest peak on Earth?\nAnswer:"],
        blank=["{s} is the tallest mountain in the ___.", "The highest mountain in the ___ is {s}."],
        role="geography teacher", pool=["Alps", "Europe", "Andes", "Africa"]),
    "material": dict(
        stmt=["The {s} is made of", "The {s} was built from"],
        q=["What is the {s} made of?", "What material is the {s} built from?"],
        para=["The material of the {s} is", "The builders of the {s} used the metal called"],
        syn=["The {s} is constructed of", "The {s} is a structure made of the metal",
             "What metal is the {s} constructed of?"],
        rev=[], blank=["The {s} is made of ___.", "The {s} is a tower built from ___."],
        role="engineer", pool=["wood", "glass", "stone", "gold"]),
    # ---------------------------------------------------------------- people
    "known_for": dict(
        stmt=["{s} is famous for the theory of", "{s} is best known for the theory of"],
        q=["What theory is {s} famous for?", "Which theory did {s} develop?"],
        para=["The theory that made {s} famous is the theory of", "{s} developed the theory of"],
        syn=["{s} is renowned for the theory of", "{s} is celebrated for the theory of",
             "Which theory is {s} renowned for?"],
        rev=["The theory of {a} was developed by", "Question: Who developed the theory of {a}?\nAnswer:"],
        blank=["{s} is famous for the theory of ___.", "The theory of ___ was developed by {s}."],
        role="science teacher", pool=["evolution", "gravity", "electricity", "magnetism"]),
    "discovered": dict(
        stmt=["{s} is famous for discovering", "{s} discovered"],
        q=["What did {s} discover?", "What is {s} famous for discovering?"],
        para=["The force that {s} described is", "An apple falling made {s} think about"],
        syn=["{s} is renowned for discovering", "{s} is celebrated for finding the law of",
             "What is {s} renowned for discovering?"],
        rev=["The law of {a} was discovered by Isaac", "Question: Who discovered {a}?\nAnswer:"],
        blank=["{s} discovered ___.", "The law of ___ was described by {s}."],
        role="science teacher", pool=["electricity", "oxygen", "radium", "evolution"]),
    "nationality": dict(
        stmt=["{s} was born in the country of", "The country where {s} was born is"],
        q=["In which country was {s} born?", "What country was {s} born in?"],
        para=["The birthplace of {s} is the country of", "{s} came from the country of"],
        syn=["{s} was a native of the country of", "{s}'s native land was",
             "What was the native land of {s}?"],
        rev=[], blank=["{s} was born in ___.", "___ is the country where {s} was born."],
        role="history teacher", pool=["Brazil", "Canada", "Russia", "Japan"]),
    "profession": dict(
        stmt=["{s} was a famous", "By profession, {s} was a"],
        q=["What was {s}'s profession?", "What was {s}'s job?"],
        para=["{s} worked as a", "{s} is remembered as a great"],
        syn=["{s}'s occupation was that of a", "{s} earned a living as a",
             "What was the occupation of {s}?"],
        rev=[], blank=["{s} was a famous ___.", "As a ___, {s} became famous."],
        role="history teacher", pool=["doctor", "farmer", "sailor", "lawyer"]),
    "wrote": dict(
        stmt=["{s} wrote the play", "A famous play by {s} is"],
        q=["Name a famous play written by {s}.", "What is a famous play by {s}?"],
        para=["One of the best-known plays by {s} is", "Among the plays {s} wrote is"],
        syn=["{s} penned the play", "{s} authored the tragedy",
             "Which tragedy did {s} author?"],
        rev=["{a} was written by", "Question: Who wrote {a}?\nAnswer:", "The author of {a} is"],
        blank=["{s} wrote ___.", "The play ___ was written by {s}."],
        role="literature teacher", pool=["Faust", "Oliver Twist", "Candide", "Ulysses"]),
    "painted": dict(
        stmt=["{s} painted the", "{s}'s most famous painting is the"],
        q=["What is {s}'s most famous painting?", "Which famous painting did {s} paint?"],
        para=["The most famous work by {s} is the", "The best-known picture by {s} is the"],
        syn=["{s}'s masterpiece is the", "{s} created the famous portrait called the",
             "What is the masterpiece of {s}?"],
        rev=["The {a} was painted by", "Question: Who painted the {a}?\nAnswer:", "The painter of the {a} was"],
        blank=["{s} painted the ___.", "The ___ is the most famous painting by {s}."],
        role="museum guide", pool=["Night Watch", "Water Lilies", "Scream", "Guernica"]),
    "composed": dict(
        stmt=["{s} was a famous composer of classical", "{s} composed classical"],
        q=["What kind of music did {s} compose?", "What music is {s} famous for?"],
        para=["{s} wrote famous pieces of classical", "The music of {s} is classical"],
        syn=["{s} created celebrated works of classical", "{s} was a master of classical",
             "What type of music did {s} create?"],
        rev=[], blank=["{s} composed classical ___.", "{s} was a composer of ___."],
        role="music teacher", pool=["jazz", "rock", "rap", "pop"]),
    "president_of": dict(
        stmt=["{s} was the president of the", "{s} served as president of the"],
        q=["Which country was {s} president of?", "{s} was president of which country?"],
        para=["{s} led the country as president of the", "{s} was elected president of the"],
        syn=["{s} was the head of state of the", "{s} held the office of president of the",
             "Which nation did {s} lead as head of state?"],
        rev=[], blank=["{s} was the president of the ___.", "The ___ elected {s} as president."],
        role="history teacher", pool=["France", "Mexico", "Brazil", "Russia"]),
    "spouse": dict(
        stmt=["{s}'s wife is", "{s} is married to"],
        q=["Who is {s}'s wife?", "Who is {s} married to?"],
        para=["The wife of {s} is", "The First Lady married to {s} is"],
        syn=["{s}'s spouse is", "{s}'s partner in marriage is", "Who is the spouse of {s}?"],
        rev=["{a} is married to", "Question: Who is {a}'s husband?\nAnswer:"],
        blank=["{s} is married to ___.", "___ is the wife of {s}."],
        role="journalist", pool=["Hillary Clinton", "Melania Trump", "Laura Bush", "Jill Biden"]),
    "number": dict(
        stmt=["{s} was the president of the United States with the number", "{s} was the"],
        q=["Which number president of the United States was {s}?", "What number president was {s}?"],
        para=["In the list of American presidents, {s} was number", "{s} was the nation's"],
        syn=["{s} was the United States president in position number", "{s} held the presidency as the",
             "In the order of presidents, which number was {s}?"],
        rev=[], blank=["{s} was the ___ president of the United States.", "The ___ president was {s}."],
        role="history teacher", pool=["first", "third", "tenth", "twentieth"]),
    "emperor_of": dict(
        stmt=["{s} was the emperor of", "{s} was a famous emperor of"],
        q=["Which country was {s} emperor of?", "{s} was the emperor of which country?"],
        para=["{s} ruled as emperor of", "{s} crowned himself emperor of"],
        syn=["{s} was the monarch of", "{s} reigned as sovereign of", "Which nation did {s} reign over?"],
        rev=[], blank=["{s} was the emperor of ___.", "___ was ruled by {s}."],
        role="history teacher", pool=["Spain", "Russia", "China", "Japan"]),
    # ---------------------------------------------------------------- works
    "author": dict(
        stmt=["{s} was written by", "The author of {s} is"],
        q=["Who wrote {s}?", "Who is the author of {s}?"],
        para=["The writer who created {s} is", "{s} is a book by"],
        syn=["{s} was penned by", "{s} was authored by", "Who penned {s}?"],
        rev=["{a} is famous for writing", "Question: What famous book did {a} write?\nAnswer:"],
        blank=["{s} was written by ___.", "___ is the author of {s}."],
        role="librarian", pool=["Charles Dickens", "Mark Twain", "Jane Austen", "Stephen King"]),
    "author_last": dict(
        stmt=["{s} was written by {f}", "The author of {s} is {f}"],
        q=["Who wrote {s}?", "Who is the author of {s}?"],
        para=["The writer who created {s} is {f}", "{s} is a book by {f}"],
        syn=["{s} was penned by {f}", "{s} was authored by {f}", "Who penned {s}?"],
        rev=["{f} {a} is famous for writing", "Question: What famous book did {f} {a} write?\nAnswer:"],
        blank=["{s} was written by {f} ___.", "{f} ___ is the author of {s}."],
        role="librarian", pool=["Dickens", "Twain", "Austen", "King"]),
    "director": dict(
        stmt=["{s} was created by George", "The director of {s} is George"],
        q=["Who created {s}?", "Who directed the first {s} film?"],
        para=["The filmmaker behind {s} is George", "{s} is a film series made by George"],
        syn=["{s} was conceived by George", "The mind behind {s} is the filmmaker George",
             "Which filmmaker conceived {s}?"],
        rev=["George {a} is famous for creating", "Question: What famous film series did George {a} create?\nAnswer:"],
        blank=["{s} was created by George ___.", "George ___ is the creator of {s}."],
        role="film critic", pool=["Spielberg", "Cameron", "Scorsese", "Nolan"]),
    "film_director": dict(
        stmt=["{s} was directed by", "The director of the film {s} is"],
        q=["Who directed the film {s}?", "Who was the director of {s}?"],
        para=["The filmmaker who made {s} is", "{s} is a film by"],
        syn=["The movie {s} was helmed by", "The motion picture {s} was made by director",
             "Which filmmaker helmed the movie {s}?"],
        rev=["{a} directed the film", "Question: Which famous film about a sinking ship did {a} direct?\nAnswer:"],
        blank=["{s} was directed by ___.", "___ directed the film {s}."],
        role="film critic", pool=["Steven Spielberg", "George Lucas", "Martin Scorsese", "Christopher Nolan"]),
    "hero": dict(
        stmt=["The main character of {s} is", "The hero of {s} is"],
        q=["Who is the main character of {s}?", "Who is the hero of {s}?"],
        para=["The story of {s} follows the hero", "In {s}, the central character is"],
        syn=["The protagonist of {s} is", "The lead character in {s} is", "Who is the protagonist of {s}?"],
        rev=["{a} is the main character of", "Question: In which story is {a} the main character?\nAnswer:"],
        blank=["The main character of {s} is ___.", "___ is the hero of {s}."],
        role="librarian", pool=["Oliver Twist", "Tom Sawyer", "Peter Pan", "Robin Hood"]),
    "villain": dict(
        stmt=["The villain of {s} is", "The main villain in {s} is"],
        q=["Who is the villain of {s}?", "Who is the main villain in {s}?"],
        para=["The evil character of {s} is", "In {s}, the bad guy is"],
        syn=["The antagonist of {s} is", "The chief enemy in {s} is", "Who is the antagonist of {s}?"],
        rev=["{a} is the villain of", "Question: In which story is {a} the main villain?\nAnswer:"],
        blank=["The villain of {s} is ___.", "___ is the main villain of {s}."],
        role="film critic", pool=["Voldemort", "the Joker", "Sauron", "Captain Hook"]),
    "school": dict(
        stmt=["In {s}, Harry goes to a school called", "The school of wizardry in {s} is"],
        q=["What school does Harry go to in {s}?", "What is the name of the school in {s}?"],
        para=["The wizarding school in {s} is called", "In the {s} books, the young wizards study at"],
        syn=["The academy of magic in {s} is", "In {s}, the children learn magic at the academy called",
             "What is the academy of magic in {s} called?"],
        rev=["The wizard school Hogwarts appears in the books called",
             "Question: Which book series is about the school {a}?\nAnswer:"],
        blank=["In {s}, Harry studies at ___.", "___ is the school of magic in {s}."],
        role="librarian", pool=["Oxford", "Eton", "Narnia", "Camelot"]),
    "sidekick": dict(
        stmt=["The best friend of {s} is Dr.", "{s}'s friend and assistant is Dr."],
        q=["Who is {s}'s assistant?", "Who is the friend of {s}?"],
        para=["{s} solves crimes with his friend Dr.", "The doctor who helps {s} is Dr."],
        syn=["{s}'s companion is Dr.", "{s}'s partner in crime-solving is Dr.", "Who is the companion of {s}?"],
        rev=["Dr. {a} is the friend of the detective", "Question: Which detective is Dr. {a}'s friend?\nAnswer:"],
        blank=["{s}'s friend is Dr. ___.", "Dr. ___ helps {s} solve crimes."],
        role="librarian", pool=["Jekyll", "Frankenstein", "Who", "Seuss"]),
    "occupation_fictional": dict(
        stmt=["{s} is a famous fictional", "{s} works as a"],
        q=["What is {s}'s job?", "What is {s} famous for being?"],
        para=["{s} is known as the great", "In the stories, {s} is a brilliant"],
        syn=["{s}'s occupation is that of a", "{s} earns a living as a", "What is the occupation of {s}?"],
        rev=["The most famous fictional detective is",
             "Question: Who is the most famous detective of Baker Street?\nAnswer:",
             "The detective who lives at 221B Baker Street is"],
        blank=["{s} is a famous ___.", "The famous ___ {s} lives in London."],
        role="librarian", pool=["doctor", "pirate", "wizard", "soldier"]),
    "lives_in": dict(
        stmt=["{s} lives in the city of", "{s} has his home in the city of"],
        q=["In which city does {s} live?", "Which city is {s}'s home?"],
        para=["The home of {s} is in", "{s}'s house is on Baker Street in"],
        syn=["{s} resides in the city of", "{s} dwells in the city of", "In which city does {s} reside?"],
        rev=[], blank=["{s} lives in ___.", "___ is the city where {s} lives."],
        role="librarian", pool=["Paris", "Dublin", "Edinburgh", "New York"]),
    "painter": dict(
        stmt=["The {s} was painted by", "The painter of the {s} is"],
        q=["Who painted the {s}?", "Who is the painter of the {s}?"],
        para=["The artist who painted the {s} is", "The {s} is a painting by"],
        syn=["The {s} was created by the artist", "The {s} is the masterpiece of", "Which artist created the {s}?"],
        rev=["The most famous painting by {a} is the", "Question: What is the most famous painting by {a}?\nAnswer: The"],
        blank=["The {s} was painted by ___.", "___ painted the {s}."],
        role="museum guide", pool=["Vincent van Gogh", "Pablo Picasso", "Rembrandt", "Claude Monet"]),
    "museum": dict(
        stmt=["The {s} is displayed in the", "The {s} hangs in the"],
        q=["In which museum is the {s}?", "Which museum holds the {s}?"],
        para=["Visitors can see the {s} at the", "The museum that owns the {s} is the"],
        syn=["The {s} is exhibited in the", "The {s} is on view at the", "Which museum exhibits the {s}?"],
        rev=["The most famous painting in the {a} is the", "Question: What is the most famous painting in the {a}?\nAnswer: The"],
        blank=["The {s} hangs in the ___.", "The ___ museum displays the {s}."],
        role="museum guide", pool=["Prado", "British Museum", "Uffizi", "Met"]),
    "setting_city": dict(
        stmt=["{s} takes place in the city of", "The story of {s} is set in"],
        q=["Where does {s} take place?", "In which city is {s} set?"],
        para=["The city where {s} happens is", "The lovers of {s} live in the city of"],
        syn=["{s} is set in the Italian city of", "The action of {s} unfolds in", "In which city does {s} unfold?"],
        rev=[], blank=["{s} is set in ___.", "___ is the city where {s} takes place."],
        role="literature teacher", pool=["Venice", "Rome", "London", "Paris"]),
    "play_author": dict(
        stmt=["{s} was written by William", "The play {s} was written by"],
        q=["Who wrote {s}?", "Who is the author of the play {s}?"],
        para=["The playwright who wrote {s} is", "{s} is a play by"],
        syn=["{s} was penned by", "The tragedy {s} was authored by", "Who penned the tragedy {s}?"],
        rev=[], blank=["{s} was written by ___.", "___ wrote the play {s}."],
        role="literature teacher", pool=["Charles Dickens", "Mark Twain", "Jane Austen", "Oscar Wilde"]),
    "ship_sank": dict(
        stmt=["In the film {s}, the ship sinks after hitting an", "The ship in {s} sank after it hit an"],
        q=["What did the ship hit in the film {s}?", "Why does the ship sink in {s}?"],
        para=["In {s}, the great ship strikes an", "The {s} ship was sunk by an"],
        syn=["In the movie {s}, the vessel collides with an", "The liner in {s} goes down after striking an",
             "What did the vessel collide with in the movie {s}?"],
        rev=["The famous ship that sank after hitting an iceberg in 1912 was the",
             "Question: Which famous ship sank after hitting an iceberg?\nAnswer: The"],
        blank=["In {s}, the ship hits an ___.", "An ___ sank the ship in {s}."],
        role="film critic", pool=["rock", "whale", "island", "mine"]),
    "actor": dict(
        stmt=["The star of the film {s} is Leonardo", "{s} stars Leonardo"],
        q=["Which actor named Leonardo stars in {s}?", "Who plays Jack in {s}? Leonardo"],
        para=["The lead actor of {s} is Leonardo", "In {s}, Jack is played by Leonardo"],
        syn=["The leading man of {s} is Leonardo", "The movie {s} features the actor Leonardo",
             "The leading man of the movie {s} is Leonardo"],
        rev=[], blank=["{s} stars Leonardo ___.", "Leonardo ___ plays Jack in {s}."],
        role="film critic", pool=["da Vinci", "Fibonacci", "Bonucci", "Nimoy"]),
    "alter_ego": dict(
        stmt=["{s}'s secret identity is", "The real name of {s} is"],
        q=["What is {s}'s secret identity?", "What is the real name of {s}?"],
        para=["Behind the mask, {s} is", "Under the mask, {s} is the billionaire"],
        syn=["{s}'s true identity is", "{s}'s civilian name is", "What is the civilian name of {s}?"],
        rev=["{a} is the secret identity of", "Question: Which superhero is {a}?\nAnswer:"],
        blank=["{s}'s secret identity is ___.", "___ is secretly {s}."],
        role="comic book expert", pool=["Clark Kent", "Peter Parker", "Tony Stark", "Diana Prince"]),
    "home_city": dict(
        stmt=["{s} protects the city of", "{s} fights crime in"],
        q=["Which city does {s} protect?", "In which city does {s} fight crime?"],
        para=["The home city of {s} is", "{s} watches over"],
        syn=["{s} guards the city of", "{s} defends the city of", "Which city does {s} guard?"],
        rev=[], blank=["{s} protects ___.", "___ is the city of {s}."],
        role="comic book expert", pool=["Metropolis", "New York", "Chicago", "Central City"]),
    "creator": dict(
        stmt=["{s} was created by", "The creator of {s} is"],
        q=["Who created {s}?", "Who is the creator of {s}?"],
        para=["The man who invented the character {s} is", "{s} is a cartoon character made by"],
        syn=["{s} was designed by", "{s} was dreamed up by", "Who designed {s}?"],
        rev=[], blank=["{s} was created by ___.", "___ created {s}."],
        role="film critic", pool=["Stan Lee", "Jim Henson", "Charles Schulz", "Matt Groening"]),
    "species": dict(
        stmt=["{s} is a cartoon", "{s} is a famous cartoon"],
        q=["What kind of animal is {s}?", "What animal is {s}?"],
        para=["The animal that {s} is drawn as is a", "{s} is drawn as a little"],
        syn=["{s} is an animated", "The creature {s} is a", "What creature is {s}?"],
        rev=[], blank=["{s} is a ___.", "The famous cartoon ___ is {s}."],
        role="film critic", pool=["duck", "dog", "cat", "rabbit"]),
    "ring_hero": dict(
        stmt=["The hobbit who carries the ring in {s} is", "The main character of {s} is"],
        q=["Who carries the ring in {s}?", "Who is the main hobbit in {s}?"],
        para=["In {s}, the ring is carried by", "The hero of {s} is a hobbit named"],
        syn=["The ring-bearer in {s} is", "The protagonist of {s} is", "Who is the ring-bearer in {s}?"],
        rev=["Frodo Baggins is the hero of", "Question: In which book does Frodo carry the One Ring?\nAnswer:"],
        blank=["In {s}, the ring is carried by ___.", "___ is the hobbit hero of {s}."],
        role="librarian", pool=["Bilbo", "Harry", "Gandalf", "Aragorn"]),
    "jedi": dict(
        stmt=["The hero of {s} is Luke", "In {s}, the young Jedi is Luke"],
        q=["Who is the hero of {s}? Luke", "What is the family name of Luke in {s}?"],
        para=["The farm boy who becomes a Jedi in {s} is Luke", "The main character of {s} is Luke"],
        syn=["The protagonist of {s} is Luke", "The young knight of {s} is Luke", "Who is the protagonist of {s}? Luke"],
        rev=["Luke Skywalker is the hero of", "Darth Vader is the villain of",
             "Question: In which film series is Luke Skywalker the hero?\nAnswer:"],
        blank=["The hero of {s} is Luke ___.", "Luke ___ is the Jedi hero of {s}."],
        role="film critic", pool=["Cage", "Perry", "Wilson", "Bryan"]),
    # ---------------------------------------------------------------- organisations
    "founder": dict(
        stmt=["{s} was founded by", "The founder of {s} is"],
        q=["Who founded {s}?", "Who is the founder of {s}?"],
        para=["The company {s} was started by", "The person who created {s} is"],
        syn=["{s} was established by", "The firm {s} was set up by", "Who established {s}?"],
        rev=["{a} is the founder of the company", "Question: Which company did {a} found?\nAnswer:"],
        blank=["{s} was founded by ___.", "___ founded {s}."],
        role="business journalist", pool=["Elon Musk", "Jeff Bezos", "Warren Buffett", "Henry Ford"]),
    "product": dict(
        stmt=["{s} is famous for making the", "The best-known product of {s} is the"],
        q=["What is {s}'s most famous product?", "What product is {s} famous for?"],
        para=["The most popular thing {s} sells is the", "Many people buy the {s}"],
        syn=["{s}'s flagship product is the", "The signature product of {s} is the",
             "What is the flagship product of {s}?"],
        rev=["The {a} is made by the company", "Question: Which company makes the {a}?\nAnswer:"],
        blank=["{s} makes the ___.", "The ___ is made by {s}."],
        role="business journalist", pool=["Walkman", "Kindle", "Model T", "Big Mac"]),
    "hq_country": dict(
        stmt=["{s} is a company based in the country of", "{s} has its headquarters in the country of"],
        q=["In which country is {s} based?", "Which country is {s} from?"],
        para=["The home country of {s} is", "{s} is a company from"],
        syn=["{s} is headquartered in the nation of", "{s} has its main offices in the nation of",
             "In which nation is {s} headquartered?"],
        rev=[], blank=["{s} is based in ___.", "{s} is a company from ___."],
        role="business journalist", pool=["Germany", "France", "Brazil", "Canada"]),
    "hq_city": dict(
        stmt=["The headquarters of {s} are in", "{s} has its headquarters in"],
        q=["Where are the headquarters of {s}?", "In which city is {s} headquartered?"],
        para=["The main office of {s} is in", "{s}'s head office is located in"],
        syn=["{s} is headquartered in", "The central offices of {s} are in", "Where is {s} headquartered?"],
        rev=[], blank=["The headquarters of {s} are in ___.", "{s} has its main office in ___."],
        role="journalist", pool=["Paris", "London", "Geneva", "Chicago"]),
    "industry": dict(
        stmt=["{s} is a company that makes", "{s} is a famous maker of"],
        q=["What does {s} make?", "What kind of products does {s} make?"],
        para=["The main product made by {s} is", "{s} is a manufacturer of"],
        syn=["{s} produces", "{s} manufactures", "What does {s} manufacture?"],
        rev=[], blank=["{s} makes ___.", "{s} is a maker of ___."],
        role="business journalist", pool=["shoes", "phones", "toys", "furniture"]),
    "agency_of": dict(
        stmt=["{s} is the space agency of the", "{s} is the space agency of"],
        q=["Which country does the space agency {s} belong to?", "{s} is the space agency of which country?"],
        para=["{s} runs the space program of the", "The space program of the United States is run by"],
        syn=["{s} is the space administration of the", "{s} explores space for the",
             "{s} is the space administration of which country?"],
        rev=["The space agency of the United States is called", "Question: What is the name of the American space agency?\nAnswer:",
             "The agency that sent Apollo astronauts to the Moon is"],
        blank=["{s} is the space agency of the ___.", "The space agency of the ___ is {s}."],
        role="science teacher", pool=["Soviet Union", "China", "France", "India"]),
    "moon": dict(
        stmt=["{s} sent the first astronauts to the", "In 1969, {s} landed astronauts on the"],
        q=["Where did {s} land astronauts in 1969?", "Where did {s} send the Apollo astronauts?"],
        para=["The Apollo missions of {s} went to the", "{s} astronauts walked on the"],
        syn=["In 1969, {s} put the first men on the", "{s}'s Apollo program reached the",
             "Which body did {s}'s Apollo program reach?"],
        rev=[], blank=["{s} landed astronauts on the ___.", "The ___ landing in 1969 was done by {s}."],
        role="science teacher", pool=["Mars", "Sun", "Venus", "Jupiter"]),
    "purpose": dict(
        stmt=["{s} is an organization that works for world", "The main goal of {s} is to keep world"],
        q=["What is the main goal of {s}?", "What does {s} work for?"],
        para=["{s} was founded to promote world", "{s} brings countries together to keep"],
        syn=["The chief aim of {s} is international", "{s} strives for global", "What is the chief aim of {s}?"],
        rev=[], blank=["{s} works for world ___.", "{s} was created to keep ___."],
        role="history teacher", pool=["trade", "war", "sport", "money"]),
    "sport": dict(
        stmt=["{s} is the governing body of the sport of", "{s} organizes the World Cup of"],
        q=["Which sport does {s} govern?", "What sport is {s} in charge of?"],
        para=["{s} runs international", "The World Cup of {s} is a tournament of"],
        syn=["{s} is the world authority of", "{s} oversees the sport of", "Which sport does {s} oversee?"],
        rev=["The international governing body of football is", "Question: Which organization runs the football World Cup?\nAnswer:"],
        blank=["{s} is the governing body of ___.", "{s} runs the World Cup of ___."],
        role="sports journalist", pool=["tennis", "basketball", "golf", "cricket"]),
    "tournament": dict(
        stmt=["{s} organizes the football", "The most famous tournament of {s} is the"],
        q=["What tournament does {s} organize?", "What is the biggest tournament run by {s}?"],
        para=["Every four years, {s} holds the", "The famous competition run by {s} is the"],
        syn=["{s} stages the", "The flagship competition of {s} is the", "What is the flagship competition of {s}?"],
        rev=[], blank=["{s} organizes the ___.", "The ___ is run by {s}."],
        role="sports journalist", pool=["Olympics", "Super Bowl", "Tour de France", "Wimbledon"]),
    "drink": dict(
        stmt=["{s} is a famous soft", "{s} is a brand of"],
        q=["What kind of product is {s}?", "What is {s}?"],
        para=["{s} is a sweet fizzy", "{s} is a popular carbonated"],
        syn=["{s} is a fizzy", "{s} is a sugary carbonated", "What kind of beverage is {s}?"],
        rev=[], blank=["{s} is a soft ___.", "{s} is a famous fizzy ___."],
        role="business journalist", pool=["car", "shoe", "phone", "toy"]),
    "product_line": dict(
        stmt=["{s} makes the operating system called", "The operating system made by {s} is"],
        q=["What operating system does {s} make?", "What is the operating system of {s}?"],
        para=["The most famous software made by {s} is", "Most computers run {s}'s operating system"],
        syn=["{s} develops the operating system", "{s}'s flagship software is", "What is the flagship software of {s}?"],
        rev=["Windows is made by the company", "Question: Which company makes Windows?\nAnswer:"],
        blank=["{s} makes the operating system ___.", "The ___ operating system is made by {s}."],
        role="business journalist", pool=["Linux", "Android", "macOS", "Unix"]),
    "search": dict(
        stmt=["{s} is famous for its search", "{s} is a company best known for its"],
        q=["What is {s} best known for?", "What kind of company is {s}?"],
        para=["People use {s} to search the", "{s} is a popular internet search"],
        syn=["{s} is renowned for its web search", "{s} is celebrated for its online search",
             "What is {s} renowned for?"],
        rev=["The most popular search engine in the world is", "Question: What is the most popular search engine?\nAnswer:"],
        blank=["{s} is a search ___.", "People use {s} to search the ___."],
        role="business journalist", pool=["car", "phone", "drink", "shoe"]),
    "social": dict(
        stmt=["{s} is a social", "{s} is a popular social"],
        q=["What kind of website is {s}?", "What is {s}?"],
        para=["People use {s} to connect with friends on a social", "{s} is one of the biggest social"],
        syn=["{s} is an online social", "{s} is a social networking", "What sort of website is {s}?"],
        rev=[], blank=["{s} is a social ___.", "{s} is a popular ___ network."],
        role="business journalist", pool=["bank", "car", "drink", "shoe"]),
    "food": dict(
        stmt=["{s} is a fast food restaurant famous for its", "{s} is famous for selling"],
        q=["What food is {s} famous for?", "What does {s} sell?"],
        para=["At {s}, people buy", "The most famous food at {s} is the"],
        syn=["{s} is renowned for its", "The signature food of {s} is the", "What is the signature food of {s}?"],
        rev=["The fast food chain famous for the Big Mac is", "Question: Which restaurant sells the Big Mac?\nAnswer:"],
        blank=["{s} sells ___.", "{s} is famous for its ___."],
        role="food critic", pool=["pizza", "sushi", "tacos", "noodles"]),
    # ---------------------------------------------------------------- objects
    "inventor": dict(
        stmt=["The {s} was invented by", "The inventor of the {s} is"],
        q=["Who invented the {s}?", "Who is the inventor of the {s}?"],
        para=["The man who invented the {s} is", "The first {s} was made by"],
        syn=["The {s} was created by", "The {s} was devised by", "Who devised the {s}?"],
        rev=["{a} is famous for inventing the", "Question: What did {a} invent?\nAnswer: The"],
        blank=["The {s} was invented by ___.", "___ invented the {s}."],
        role="science teacher", pool=["Nikola Tesla", "Henry Ford", "James Watt", "Isaac Newton"]),
    "used_for": dict(
        stmt=["A {s} is used to", "People use a {s} to"],
        q=["What is a {s} used for?", "What do people use a {s} for?"],
        para=["The purpose of a {s} is to", "With a {s}, you can"],
        syn=["A {s} is employed to", "A {s} serves to", "What does a {s} serve to do?"],
        rev=[], blank=["A {s} is used to ___.", "People use a {s} to ___."],
        role="science teacher", pool=["cook food", "cut paper", "tell the time", "dig holes"]),
    "instrument": dict(
        stmt=["The {s} is a musical", "A {s} is a kind of musical"],
        q=["What kind of object is a {s}?", "What is a {s}?"],
        para=["The {s} is played as a musical", "A {s} is a popular musical"],
        syn=["The {s} is a music-making", "A {s} is a kind of music", "What sort of thing is a {s}?"],
        rev=[], blank=["The {s} is a musical ___.", "A {s} is an ___ played by musicians."],
        role="music teacher", pool=["tool", "toy", "machine", "vehicle"]),
    "count": dict(
        stmt=["A {s} has", "A normal {s} has"],
        q=["How many {p} does a {s} have?", "A {s} has how many {p}?"],
        para=["The number of {p} on a {s} is", "Count the {p} on a {s}: there are"],
        syn=["A {s} is equipped with", "A standard {s} comes with", "How many {p} does a standard {s} come with?"],
        rev=[], blank=["A {s} has ___ {p}.", "There are ___ {p} on a {s}."],
        role="music teacher", pool=["three", "five", "eight", "ten"]),
    "points": dict(
        stmt=["A {s} always points", "The needle of a {s} points"],
        q=["Which direction does a {s} point?", "Where does the needle of a {s} point?"],
        para=["The magnetic needle of a {s} shows the way", "Sailors use a {s} because it points"],
        syn=["The needle of a {s} indicates", "A {s} needle aims", "Which direction does a {s} needle indicate?"],
        rev=[], blank=["A {s} points ___.", "The needle of a {s} always shows ___."],
        role="science teacher", pool=["east", "west", "up", "down"]),
    "measures": dict(
        stmt=["A {s} is used to measure", "A {s} measures"],
        q=["What does a {s} measure?", "What is a {s} used to measure?"],
        para=["You use a {s} when you want to know the", "Doctors use a {s} to check the"],
        syn=["A {s} gauges", "A {s} is an instrument for gauging", "What does a {s} gauge?"],
        rev=[], blank=["A {s} measures ___.", "A {s} is used to measure ___."],
        role="science teacher", pool=["weight", "speed", "length", "time"]),
    "see": dict(
        stmt=["A {s} is used to look at", "Scientists use a {s} to see"],
        q=["What is a {s} used to look at?", "What do people see with a {s}?"],
        para=["With a {s}, you can see", "Astronomers point a {s} at the"],
        syn=["A {s} is used to observe", "A {s} lets you view", "What does a {s} let you observe?"],
        rev=[], blank=["A {s} is used to look at ___.", "People use a {s} to see ___."],
        role="science teacher", pool=["fish", "cars", "trees", "books"]),
    # ---------------------------------------------------------------- added relations
    "powered_by": dict(
        stmt=["A {s} is powered by", "A {s} needs"],
        q=["What powers a {s}?", "What does a {s} need to work?"],
        para=["To work, a {s} uses", "A {s} only works when it gets"],
        syn=["A {s} is driven by", "A {s} draws its energy from", "What drives a {s}?"],
        rev=[], blank=["A {s} is powered by ___.", "A {s} needs ___ to work."],
        role="science teacher", pool=["water", "wind", "coal", "oil"]),
    "keys": dict(
        stmt=["A {s} has black and white", "You play a {s} by pressing its"],
        q=["What do you press to play a {s}?", "What are the black and white parts of a {s} called?"],
        para=["A pianist plays the {s} by pressing the", "The black and white parts of a {s} are called"],
        syn=["A {s} is played by striking its", "The {s} makes sound when you press down its",
             "What do you strike to play a {s}?"],
        rev=["The instrument with 88 black and white keys is the",
             "Question: Which musical instrument has black and white keys?\nAnswer: The"],
        blank=["A {s} has black and white ___.", "You press the ___ of a {s} to play it."],
        role="music teacher", pool=["strings", "pedals", "pipes", "drums"]),
    "strings": dict(
        stmt=["You play the {s} by plucking its", "A {s} makes its sound with its"],
        q=["What do you pluck to play a {s}?", "What part of a {s} makes the sound?"],
        para=["A guitarist plays the {s} by strumming the", "The sound of a {s} comes from its"],
        syn=["A {s} is played by plucking the", "A {s} produces music from vibrating",
             "What vibrates to make the sound of a {s}?"],
        rev=["The instrument with six strings that rock musicians play is the",
             "Question: Which instrument with six strings is played in rock bands?\nAnswer: The"],
        blank=["You pluck the ___ of a {s}.", "A {s} has six ___."],
        role="music teacher", pool=["keys", "pedals", "pipes", "drums"]),
    "magnetic": dict(
        stmt=["A {s} has a magnetic", "Inside a {s} is a magnetic"],
        q=["What part of a {s} points north?", "What is the moving part of a {s} called?"],
        para=["The part of a {s} that moves is the", "A {s} works with a small magnetic"],
        syn=["A {s} contains a magnetized", "The pointer of a {s} is a magnetic",
             "What is the magnetized pointer of a {s} called?"],
        rev=["The tool with a magnetic needle that points north is the",
             "Question: Which tool has a needle that points north?\nAnswer: A"],
        blank=["A {s} has a magnetic ___.", "The ___ of a {s} points north."],
        role="science teacher", pool=["wheel", "lens", "battery", "spring"]),
    "photos": dict(
        stmt=["A {s} is used to take", "With a {s}, you can take"],
        q=["What do you take with a {s}?", "What does a {s} make?"],
        para=["People carry a {s} on holiday to take", "A photographer uses a {s} to take"],
        syn=["A {s} is used to capture", "A {s} records", "What does a {s} capture?"],
        rev=["The device that people use to take photographs is a",
             "Question: What device do you use to take pictures?\nAnswer: A"],
        blank=["A {s} is used to take ___.", "You take ___ with a {s}."],
        role="photography teacher", pool=["notes", "temperatures", "walks", "baths"]),
    "pedals": dict(
        stmt=["You ride a {s} by pushing the", "To move a {s} forward, you push the"],
        q=["What do you push with your feet to ride a {s}?", "What makes a {s} move forward?"],
        para=["A cyclist makes the {s} go by pressing the", "The feet of the rider push the {s}'s"],
        syn=["A rider propels a {s} with the", "A {s} is driven forward by its",
             "What does a rider push to propel a {s}?"],
        rev=["The vehicle with two wheels and pedals is the",
             "Question: Which vehicle has two wheels and pedals?\nAnswer: A"],
        blank=["You push the ___ of a {s} with your feet.", "A {s} moves when you push the ___."],
        role="sports teacher", pool=["buttons", "keys", "strings", "wings"]),
    "abolished": dict(
        stmt=["{s} is famous for ending", "{s} abolished"],
        q=["What did {s} abolish?", "What is {s} famous for ending?"],
        para=["The Emancipation Proclamation of {s} freed people from", "{s} fought to end"],
        syn=["{s} put an end to", "{s} outlawed", "What did {s} outlaw?"],
        rev=["The president who abolished slavery in the United States was Abraham",
             "Question: Which president ended slavery in the United States?\nAnswer:"],
        blank=["{s} abolished ___.", "{s} is famous for ending ___."],
        role="history teacher", pool=["taxes", "football", "the monarchy", "trains"]),
    "best_friend": dict(
        stmt=["{s}'s best friends are Ron and", "In the books, {s}'s best friend is"],
        q=["Who are {s}'s best friends?", "Who is {s}'s best friend?"],
        para=["{s} goes on adventures with his friends Ron and", "The closest friends of {s} are"],
        syn=["{s}'s closest companions are Ron and", "{s}'s dearest friend is", "Who is the dearest friend of {s}?"],
        rev=[], blank=["{s}'s best friends are Ron and ___.", "___ is the best friend of {s}."],
        role="librarian", pool=["Draco", "Neville", "Luna", "Dudley"]),
}

# kind, facts {relation: answers}, extra template slots, reverse answers (None: default)
E: dict[str, dict] = {}


def ent(name, kind, facts, rev=None, subject=None, slots=None):
    E[name] = dict(kind=kind, facts=facts, rev=rev, subject=subject or name, slots=slots or {})


# ---------------------------------------------------------------- places: countries
ent("Japan", "place", {"capital": ["Tokyo"], "language": ["Japanese"], "currency": ["yen"], "continent": ["Asia"]})
ent("France", "place", {"capital": ["Paris"], "language": ["French"], "currency": ["euro"], "continent": ["Europe"]})
ent("Germany", "place", {"capital": ["Berlin"], "language": ["German"], "currency": ["euro"], "continent": ["Europe"]})
ent("Egypt", "place", {"capital": ["Cairo"], "language": ["Arabic"], "currency": ["pound"], "continent": ["Africa"]})
ent("Italy", "place", {"capital": ["Rome"], "language": ["Italian"], "currency": ["euro"], "continent": ["Europe"]})
ent("Spain", "place", {"capital": ["Madrid"], "language": ["Spanish"], "currency": ["euro"], "continent": ["Europe"]})
ent("China", "place", {"capital": ["Beijing"], "language": ["Chinese", "Mandarin"], "currency": ["yuan"],
                       "continent": ["Asia"]})
ent("Russia", "place", {"capital": ["Moscow"], "language": ["Russian"], "currency": ["ruble", "rouble"]})
ent("India", "place", {"capital": ["New Delhi", "Delhi"], "language": ["Hindi"], "currency": ["rupee"],
                       "continent": ["Asia"]})
ent("Greece", "place", {"capital": ["Athens"], "language": ["Greek"], "currency": ["euro"], "continent": ["Europe"]})
ent("Canada", "place", {"capital": ["Ottawa"], "language": ["English", "French"], "currency": ["dollar"],
                        "continent": ["North America"]})
ent("Mexico", "place", {"capital": ["Mexico City"], "language": ["Spanish"], "currency": ["peso"],
                        "continent": ["North America"]})
ent("Portugal", "place", {"capital": ["Lisbon"], "language": ["Portuguese"], "continent": ["Europe"]})
ent("South Korea", "place", {"capital": ["Seoul"], "language": ["Korean"], "continent": ["Asia"]})
ent("Turkey", "place", {"capital": ["Ankara"], "language": ["Turkish"]})
ent("Austria", "place", {"capital": ["Vienna"], "language": ["German"], "continent": ["Europe"]})
ent("Sweden", "place", {"capital": ["Stockholm"], "language": ["Swedish"], "continent": ["Europe"]})
ent("Brazil", "place", {"capital": ["Brasilia", "Brasília"], "language": ["Portuguese"], "continent": ["South America"]})
# ---------------------------------------------------------------- places: landmarks, cities, nature
ent("Eiffel Tower", "place", {"city": ["Paris"], "country": ["France"], "material": ["iron", "steel", "metal"]},
    rev=["Eiffel Tower", "Eiffel"])
ent("Statue of Liberty", "place", {"city": ["New York"], "country": ["United States", "USA", "America"]},
    rev=["Statue of Liberty"])
ent("Colosseum", "place", {"city": ["Rome"], "country": ["Italy"]})
ent("Big Ben", "place", {"city": ["London"], "country": ["England", "United Kingdom", "UK", "Britain"]})
ent("Taj Mahal", "place", {"city": ["Agra"], "country": ["India"]})
ent("Kremlin", "place", {"city": ["Moscow"], "country": ["Russia"]})
ent("Sydney Opera House", "place", {"country": ["Australia"]})
ent("Brandenburg Gate", "place", {"city": ["Berlin"], "country": ["Germany"]})
ent("Golden Gate Bridge", "place", {"city": ["San Francisco"], "country": ["United States", "USA", "America"]})
ent("Louvre", "place", {"city": ["Paris"], "country": ["France"]})
ent("Acropolis", "place", {"city": ["Athens"], "country": ["Greece"]})
ent("Mount Everest", "place", {"place_country": ["Nepal", "Tibet", "China"], "range": ["Himalaya"],
                               "continent": ["Asia"], "tallest": ["world", "Earth"]},
    rev=["Mount Everest", "Everest"])
ent("Mont Blanc", "place", {"place_country": ["France", "Italy"], "range": ["Alps"], "continent": ["Europe"]})
ent("Mount Fuji", "place", {"place_country": ["Japan"], "continent": ["Asia"]})
ent("Kilimanjaro", "place", {"place_country": ["Tanzania"], "continent": ["Africa"]})
ent("Sahara", "place", {"continent": ["Africa"]})
ent("Grand Canyon", "place", {"place_country": ["United States", "USA", "America"], "continent": ["North America"]})
ent("Amazon rainforest", "place", {"place_country": ["Brazil"], "continent": ["South America"]})
ent("Alps", "place", {"continent": ["Europe"]})
ent("Niagara Falls", "place", {"place_country": ["Canada", "United States", "USA"], "continent": ["North America"]})
ent("London", "place", {"place_country": ["England", "United Kingdom", "UK", "Britain"], "continent": ["Europe"]})
ent("New York City", "place", {"place_country": ["United States", "USA", "America"], "continent": ["North America"]})
ent("Sydney", "place", {"place_country": ["Australia"]})
ent("Tokyo", "place", {"place_country": ["Japan"], "continent": ["Asia"]})
ent("Paris", "place", {"place_country": ["France"], "continent": ["Europe"]})
ent("Cairo", "place", {"place_country": ["Egypt"], "continent": ["Africa"]})
ent("Rome", "place", {"place_country": ["Italy"], "continent": ["Europe"]})
# ---------------------------------------------------------------- people
ent("Albert Einstein", "person", {"known_for": ["relativity"], "nationality": ["Germany"],
                                  "profession": ["physicist", "scientist"]}, rev=["Einstein"])
ent("Isaac Newton", "person", {"discovered": ["gravity", "gravitation"], "nationality": ["England", "Britain"],
                               "profession": ["physicist", "scientist", "mathematician"]}, rev=["Newton"])
ent("Charles Darwin", "person", {"known_for": ["evolution"], "nationality": ["England", "Britain"],
                                 "profession": ["naturalist", "scientist", "biologist"]}, rev=["Darwin"])
ent("Galileo Galilei", "person", {"nationality": ["Italy"], "profession": ["astronomer", "scientist", "physicist"]},
    rev=["Galileo"])
ent("Thomas Edison", "person", {"nationality": ["United States", "America", "USA"],
                                "profession": ["inventor", "scientist"]}, rev=["Edison"])
ent("Marie Curie", "person", {"nationality": ["Poland"], "profession": ["scientist", "physicist", "chemist"]},
    rev=["Curie"])
ent("Nikola Tesla", "person", {"profession": ["inventor", "engineer", "scientist"]}, rev=["Tesla"])
ent("Stephen Hawking", "person", {"nationality": ["England", "Britain"], "profession": ["physicist", "scientist"]},
    rev=["Hawking"])
ent("William Shakespeare", "person", {"wrote": ["Hamlet", "Romeo and Juliet", "Macbeth", "Othello", "King Lear"],
                                      "nationality": ["England", "Britain"],
                                      "profession": ["playwright", "writer", "poet", "dramatist"]},
    rev=["Shakespeare"])
ent("Charles Dickens", "person", {"nationality": ["England", "Britain"], "profession": ["writer", "novelist", "author"]},
    rev=["Dickens"])
ent("Jane Austen", "person", {"nationality": ["England", "Britain"], "profession": ["writer", "novelist", "author"]},
    rev=["Austen"])
ent("Mark Twain", "person", {"nationality": ["United States", "America", "USA"],
                             "profession": ["writer", "novelist", "author", "humorist"]}, rev=["Twain"])
ent("Ernest Hemingway", "person", {"nationality": ["United States", "America", "USA"],
                                   "profession": ["writer", "novelist", "author", "journalist"]}, rev=["Hemingway"])
ent("Leonardo da Vinci", "person", {"painted": ["Mona Lisa", "Last Supper"], "nationality": ["Italy"],
                                    "profession": ["painter", "artist", "inventor", "polymath"]},
    rev=["Leonardo", "da Vinci"])
ent("Pablo Picasso", "person", {"nationality": ["Spain"], "profession": ["painter", "artist"]}, rev=["Picasso"])
ent("Vincent van Gogh", "person", {"nationality": ["Netherlands", "Holland"], "profession": ["painter", "artist"]},
    rev=["van Gogh", "Gogh"])
ent("Michelangelo", "person", {"nationality": ["Italy"], "profession": ["painter", "sculptor", "artist"]})
ent("Claude Monet", "person", {"nationality": ["France"], "profession": ["painter", "artist"]}, rev=["Monet"])
ent("Rembrandt", "person", {"nationality": ["Netherlands", "Holland"], "profession": ["painter", "artist"]})
ent("Wolfgang Amadeus Mozart", "person", {"composed": ["music"], "nationality": ["Austria"],
                                          "profession": ["composer", "musician", "pianist"]}, rev=["Mozart"])
ent("Ludwig van Beethoven", "person", {"composed": ["music"], "nationality": ["Germany"],
                                       "profession": ["composer", "musician", "pianist"]}, rev=["Beethoven"])
ent("Johann Sebastian Bach", "person", {"composed": ["music"], "nationality": ["Germany"],
                                        "profession": ["composer", "musician", "organist"]}, rev=["Bach"])
ent("Frederic Chopin", "person", {"composed": ["music"], "nationality": ["Poland"],
                                  "profession": ["composer", "pianist", "musician"]}, rev=["Chopin"])
ent("Barack Obama", "person", {"president_of": ["United States"], "spouse": ["Michelle"],
                               "number": ["44"], "profession": ["politician", "president", "lawyer"]}, rev=["Obama"])
ent("Abraham Lincoln", "person", {"president_of": ["United States"], "number": ["16"], "abolished": ["slavery"],
                                  "profession": ["politician", "president", "lawyer"]}, rev=["Lincoln"])
ent("George Washington", "person", {"president_of": ["United States"], "number": ["first", "1st", "1"],
                                    "profession": ["general", "president", "politician", "soldier"]},
    rev=["Washington"])
ent("Donald Trump", "person", {"president_of": ["United States"], "spouse": ["Melania"],
                               "profession": ["businessman", "politician", "president"]}, rev=["Trump"])
ent("Napoleon Bonaparte", "person", {"emperor_of": ["France"], "nationality": ["France", "Corsica"],
                                     "profession": ["emperor", "general", "soldier", "military"]},
    rev=["Napoleon"])
ent("Julius Caesar", "person", {"nationality": ["Italy", "Rome"], "profession": ["general", "emperor", "politician",
                                                                               "dictator"]}, rev=["Caesar"])
ent("Queen Elizabeth II", "person", {"nationality": ["England", "United Kingdom", "Britain"],
                                     "profession": ["queen", "monarch"]}, rev=["Elizabeth"])
# ---------------------------------------------------------------- works
ent("Harry Potter", "work", {"author": ["J.K. Rowling", "Rowling"], "villain": ["Voldemort"],
                             "school": ["Hogwarts"], "best_friend": ["Hermione", "Ron"],
                             "occupation_fictional": ["wizard"]}, rev=["Harry Potter"])
ent("The Lord of the Rings", "work", {"author": ["J.R.R. Tolkien", "Tolkien"], "villain": ["Sauron"],
                                      "ring_hero": ["Frodo"]}, rev=["Lord of the Rings"])
ent("The Hobbit", "work", {"author": ["J.R.R. Tolkien", "Tolkien"]}, rev=["Hobbit"])
ent("Sherlock Holmes", "work", {"author": ["Arthur Conan Doyle", "Conan Doyle", "Doyle"], "sidekick": ["Watson"],
                                "occupation_fictional": ["detective"], "lives_in": ["London"]},
    rev=["Sherlock Holmes", "Sherlock", "Holmes"])
ent("Hercule Poirot", "work", {"author": ["Agatha Christie", "Christie"], "occupation_fictional": ["detective"]},
    rev=["Poirot"])
ent("Pride and Prejudice", "work", {"author": ["Jane Austen", "Austen"]})
ent("Oliver Twist", "work", {"author": ["Charles Dickens", "Dickens"]})
ent("A Christmas Carol", "work", {"author": ["Charles Dickens", "Dickens"]})
ent("The Adventures of Tom Sawyer", "work", {"author": ["Mark Twain", "Twain"]})
ent("The Old Man and the Sea", "work", {"author": ["Ernest Hemingway", "Hemingway"]})
ent("Dracula", "work", {"author": ["Bram Stoker", "Stoker"], "occupation_fictional": ["vampire", "count"]})
ent("Frankenstein", "work", {"author": ["Mary Shelley", "Shelley"]})
ent("The Hunger Games", "work", {"author": ["Suzanne Collins", "Collins"]})
ent("Charlie and the Chocolate Factory", "work", {"author": ["Roald Dahl", "Dahl"]})
ent("Don Quixote", "work", {"author": ["Miguel de Cervantes", "Cervantes"]})
ent("Star Wars", "work", {"director": ["Lucas"], "villain": ["Darth Vader", "Vader"], "jedi": ["Skywalker"]},
    rev=["Star Wars"])
ent("Star Trek", "work", {"hero": ["Captain Kirk", "Kirk", "Spock"]})
ent("Jurassic Park", "work", {"film_director": ["Steven Spielberg", "Spielberg"]})
ent("Titanic", "work", {"film_director": ["James Cameron", "Cameron"], "ship_sank": ["iceberg"],
                        "actor": ["DiCaprio"]}, rev=["Titanic"])
ent("The Godfather", "work", {"film_director": ["Francis Ford Coppola", "Coppola"]})
ent("Avatar", "work", {"film_director": ["James Cameron", "Cameron"]})
ent("Mona Lisa", "work", {"painter": ["Leonardo da Vinci", "Leonardo", "da Vinci"], "museum": ["Louvre"]},
    rev=["Mona Lisa"])
ent("The Starry Night", "work", {"painter": ["Vincent van Gogh", "van Gogh", "Gogh"]})
ent("Guernica", "work", {"painter": ["Pablo Picasso", "Picasso"]})
ent("The Last Supper", "work", {"painter": ["Leonardo da Vinci", "Leonardo", "da Vinci"]})
ent("The Scream", "work", {"painter": ["Edvard Munch", "Munch"]})
ent("Romeo and Juliet", "work", {"play_author": ["Shakespeare"], "setting_city": ["Verona"]},
    rev=["Romeo and Juliet"])
ent("Hamlet", "work", {"play_author": ["Shakespeare"]})
ent("Macbeth", "work", {"play_author": ["Shakespeare"]})
ent("Batman", "work", {"alter_ego": ["Bruce Wayne"], "home_city": ["Gotham"], "villain": ["Joker"]},
    rev=["Batman"])
ent("Superman", "work", {"alter_ego": ["Clark Kent"], "home_city": ["Metropolis"]})
ent("Spider-Man", "work", {"alter_ego": ["Peter Parker"], "home_city": ["New York"]})
ent("Mickey Mouse", "work", {"creator": ["Walt Disney", "Disney"], "species": ["mouse"]}, rev=["Mickey"])
ent("Winnie-the-Pooh", "work", {"species": ["bear"], "author": ["A. A. Milne", "A.A. Milne", "Milne"]})
ent("Peter Rabbit", "work", {"author": ["Beatrix Potter"]})
# ---------------------------------------------------------------- organisations
ent("Apple", "organisation", {"founder": ["Steve Jobs", "Jobs"], "product": ["iPhone", "Mac", "iPad"],
                              "hq_country": ["United States", "America", "USA"]}, rev=["Apple"])
ent("Microsoft", "organisation", {"founder": ["Bill Gates", "Gates"], "product_line": ["Windows"],
                                  "hq_country": ["United States", "America", "USA"]}, rev=["Microsoft"])
ent("Google", "organisation", {"founder": ["Larry Page", "Sergey Brin", "Page", "Brin"], "search": ["engine", "search"],
                               "product": ["Android", "Chrome", "Gmail", "Pixel"],
                               "hq_country": ["United States", "America", "USA"]}, rev=["Google"])
ent("Facebook", "organisation", {"founder": ["Mark Zuckerberg", "Zuckerberg"], "social": ["network", "media"],
                                 "hq_country": ["United States", "America", "USA"]}, rev=["Facebook"])
ent("Amazon", "organisation", {"founder": ["Jeff Bezos", "Bezos"]})
ent("Tesla Motors", "organisation", {"founder": ["Elon Musk", "Musk"]})
ent("NASA", "organisation", {"agency_of": ["United States", "USA", "America"], "moon": ["Moon"],
                             "hq_city": ["Washington"]}, rev=["NASA"])
ent("United Nations", "organisation", {"hq_city": ["New York"], "purpose": ["peace"]}, rev=["United Nations", "UN"])
ent("Toyota", "organisation", {"hq_country": ["Japan"], "industry": ["cars", "car", "vehicles", "automobiles"],
                               "product": ["Corolla", "Prius", "Camry"]},
    rev=["Toyota"])
ent("Honda", "organisation", {"hq_country": ["Japan"], "industry": ["cars", "car", "motorcycles", "vehicles"]})
ent("Sony", "organisation", {"hq_country": ["Japan"], "product": ["PlayStation", "Walkman"],
                             "industry": ["electronics", "televisions", "TV"]})
ent("Samsung", "organisation", {"hq_country": ["South Korea", "Korea"], "industry": ["phones", "electronics"]})
ent("BMW", "organisation", {"hq_country": ["Germany"], "industry": ["cars", "car", "vehicles", "motorcycles"]})
ent("Volkswagen", "organisation", {"hq_country": ["Germany"], "industry": ["cars", "car", "vehicles"]})
ent("Ferrari", "organisation", {"hq_country": ["Italy"], "industry": ["cars", "car", "sports cars"]})
ent("IKEA", "organisation", {"hq_country": ["Sweden"], "industry": ["furniture"]})
ent("Nike", "organisation", {"hq_country": ["United States", "America", "USA"], "industry": ["shoes", "sneakers",
                                                                                            "sportswear", "clothing"]})
ent("Coca-Cola", "organisation", {"drink": ["drink", "beverage", "soda"], "hq_city": ["Atlanta"],
                                  "hq_country": ["United States", "America", "USA"]}, rev=["Coca-Cola", "Coke"])
ent("Pepsi", "organisation", {"drink": ["drink", "beverage", "soda", "cola"]})
ent("McDonald's", "organisation", {"food": ["hamburgers", "burgers", "Big Mac", "fries"],
                                   "hq_country": ["United States", "America", "USA"]}, rev=["McDonald"])
ent("FIFA", "organisation", {"sport": ["football", "soccer"], "tournament": ["World Cup"], "hq_city": ["Zurich"]}, rev=["FIFA"])
ent("Red Cross", "organisation", {"hq_city": ["Geneva"]})
ent("World Health Organization", "organisation", {"hq_city": ["Geneva"]})
ent("European Union", "organisation", {"hq_city": ["Brussels"]})
# ---------------------------------------------------------------- objects
ent("telephone", "object", {"inventor": ["Alexander Graham Bell", "Bell"], "used_for": ["talk", "call",
                                                                                      "communicate", "speak"],
                            "powered_by": ["electricity", "battery", "power"]},
    rev=["telephone", "phone"])
ent("light bulb", "object", {"inventor": ["Thomas Edison", "Edison"], "powered_by": ["electricity", "power", "energy",
                                                                                      "electric"]},
    rev=["light bulb", "lightbulb", "bulb"])
ent("printing press", "object", {"inventor": ["Johannes Gutenberg", "Gutenberg"], "used_for": ["print"]},
    rev=["printing press"])
ent("airplane", "object", {"inventor": ["Wright"], "used_for": ["fly", "travel"]}, rev=["airplane", "plane"])
ent("telescope", "object", {"see": ["stars", "planets", "sky", "moon", "distant"], "inventor": ["Galileo", "Lippershey"],
                            "used_for": ["see", "look", "observe", "view"]}, rev=["telescope"])
ent("microscope", "object", {"see": ["small", "tiny", "cells", "bacteria"], "used_for": ["see", "look", "magnify",
                                                                                       "observe"]},
    rev=["microscope"])
ent("piano", "object", {"instrument": ["instrument"], "count": ["88", "eighty-eight"], "keys": ["keys"]}, rev=["piano"],
    slots={"p": "keys"})
ent("guitar", "object", {"instrument": ["instrument"], "count": ["six", "6"], "strings": ["strings"]}, rev=["guitar"],
    slots={"p": "strings"})
ent("violin", "object", {"instrument": ["instrument"], "count": ["four", "4"]}, rev=["violin"], slots={"p": "strings"})
ent("drum", "object", {"instrument": ["instrument"]})
ent("flute", "object", {"instrument": ["instrument"]})
ent("trumpet", "object", {"instrument": ["instrument"]})
ent("bicycle", "object", {"count": ["two", "2"], "used_for": ["ride", "travel", "move", "get around"],
                          "pedals": ["pedals"]},
    rev=["bicycle", "bike"], slots={"p": "wheels"})
ent("tricycle", "object", {"count": ["three", "3"]}, slots={"p": "wheels"})
ent("compass", "object", {"points": ["north"], "used_for": ["find", "navigate", "direction"], "magnetic": ["needle"]},
    rev=["compass"])
ent("thermometer", "object", {"measures": ["temperature"], "powered_by": ["battery", "electricity", "mercury"]},
    rev=["thermometer"])
ent("clock", "object", {"used_for": ["tell time", "tell the time", "time"]})
ent("camera", "object", {"used_for": ["take pictures", "take photos", "photograph", "capture", "record"],
                         "photos": ["pictures", "photos", "photographs", "images"]},
    rev=["camera"])
ent("scissors", "object", {"used_for": ["cut"]})
ent("pencil", "object", {"used_for": ["write", "draw"]})
ent("umbrella", "object", {"used_for": ["keep", "protect", "rain", "shield"]})
ent("barometer", "object", {"measures": ["pressure", "air pressure", "atmospheric"]})
ent("ruler", "object", {"measures": ["length", "distance"], "used_for": ["measure", "draw"]})
ent("car", "object", {"count": ["four", "4"], "used_for": ["drive", "travel", "transport"]}, slots={"p": "wheels"})
ent("computer", "object", {"used_for": ["process", "compute", "store", "calculate", "work"],
                           "powered_by": ["electricity", "power"]})
ent("steam engine", "object", {"inventor": ["James Watt", "Watt"]})
ent("radio", "object", {"inventor": ["Guglielmo Marconi", "Marconi"], "used_for": ["listen", "communicate", "broadcast"]})

# ---------------------------------------------------------------- the suite: (name, split, neighbours, redirect_to)
# The 10 concepts of concepts.jsonl come first, by the same names and redirects.
SUITE = [
    ("Eiffel Tower", "dev", ["Colosseum", "Big Ben", "Taj Mahal", "Kremlin", "Sydney Opera House", "Brandenburg Gate",
                             "Golden Gate Bridge", "Acropolis"], "Statue of Liberty"),
    ("Japan", "dev", ["China", "South Korea", "India", "Russia", "Egypt", "Canada", "Mexico", "Germany"], "Italy"),
    ("Harry Potter", "dev", ["The Lord of the Rings", "The Hobbit", "Pride and Prejudice", "Oliver Twist",
                             "The Hunger Games", "Charlie and the Chocolate Factory", "Dracula", "Frankenstein"],
     "Peter Rabbit"),
    ("Sherlock Holmes", "test", ["Dracula", "Mickey Mouse", "Batman", "Superman", "Frankenstein", "Oliver Twist",
                                 "Spider-Man", "The Hobbit"], "Hercule Poirot"),
    ("Albert Einstein", "test", ["Isaac Newton", "Galileo Galilei", "Thomas Edison", "Marie Curie", "Nikola Tesla",
                                 "Stephen Hawking", "Michelangelo", "Pablo Picasso"], "Charles Darwin"),
    ("William Shakespeare", "dev", ["Jane Austen", "Mark Twain", "Ernest Hemingway", "Pablo Picasso", "Isaac Newton",
                                    "Wolfgang Amadeus Mozart", "Vincent van Gogh", "Marie Curie"], "Charles Dickens"),
    ("Mount Everest", "test", ["Mount Fuji", "Kilimanjaro", "Sahara", "Grand Canyon", "Amazon rainforest", "Alps",
                               "Niagara Falls", "Sydney"], "Mont Blanc"),
    ("Leonardo da Vinci", "dev", ["Vincent van Gogh", "Pablo Picasso", "Michelangelo", "Rembrandt", "Galileo Galilei",
                                  "Isaac Newton", "Ludwig van Beethoven", "Charles Dickens"], "Claude Monet"),
    ("The Lord of the Rings", "test", ["Harry Potter", "Pride and Prejudice", "Oliver Twist", "The Hunger Games",
                                       "The Adventures of Tom Sawyer", "Frankenstein", "Don Quixote", "Dracula",
                                       "Sherlock Holmes", "Star Wars", "Batman", "Superman", "Charlie and the Chocolate Factory"],
     "Winnie-the-Pooh"),
    ("Star Wars", "test", ["Jurassic Park", "The Godfather", "Star Trek", "Avatar", "Mickey Mouse", "Batman",
                           "Superman", "Spider-Man", "Harry Potter", "The Lord of the Rings", "Sherlock Holmes",
                           "Dracula", "Pride and Prejudice", "Oliver Twist"], "Titanic"),
    # places
    ("France", "test", ["Germany", "Spain", "Greece", "Portugal", "Japan", "China", "Egypt", "Mexico", "Sweden"],
     "Austria"),
    ("Germany", "dev", ["France", "Spain", "Japan", "China", "India", "Egypt", "Canada", "Greece", "Sweden"], "Portugal"),
    ("Egypt", "test", ["Japan", "China", "India", "Greece", "Mexico", "Canada", "Spain", "South Korea"], "Turkey"),
    ("China", "dev", ["Japan", "India", "Egypt", "Greece", "Germany", "Mexico", "Canada", "Spain"], "South Korea"),
    ("Statue of Liberty", "test", ["Colosseum", "Big Ben", "Taj Mahal", "Kremlin", "Brandenburg Gate", "Acropolis",
                                   "Louvre", "Sydney Opera House"], "Golden Gate Bridge"),
    ("London", "dev", ["Tokyo", "Paris", "Cairo", "Rome", "Sydney", "Mount Fuji", "Grand Canyon", "Sahara"],
     "New York City"),
    # people
    ("Isaac Newton", "dev", ["Albert Einstein", "Galileo Galilei", "Thomas Edison", "Marie Curie", "Nikola Tesla",
                             "Stephen Hawking", "Charles Dickens", "Pablo Picasso"], "Charles Darwin"),
    ("Wolfgang Amadeus Mozart", "test", ["Ludwig van Beethoven", "Johann Sebastian Bach", "Frederic Chopin",
                                         "Pablo Picasso", "William Shakespeare", "Isaac Newton", "Vincent van Gogh",
                                         "Marie Curie"], "Claude Monet"),
    ("Pablo Picasso", "test", ["Vincent van Gogh", "Michelangelo", "Rembrandt", "Claude Monet", "Albert Einstein",
                               "William Shakespeare", "Wolfgang Amadeus Mozart", "Charles Dickens"], "Leonardo da Vinci"),
    ("Barack Obama", "dev", ["Abraham Lincoln", "George Washington", "Donald Trump", "Napoleon Bonaparte",
                             "Julius Caesar", "Queen Elizabeth II", "Albert Einstein", "William Shakespeare"],
     "Mark Twain"),
    ("Abraham Lincoln", "test", ["Barack Obama", "George Washington", "Donald Trump", "Napoleon Bonaparte",
                                 "Julius Caesar", "Queen Elizabeth II", "Charles Dickens", "Isaac Newton"],
     "Thomas Edison"),
    ("Napoleon Bonaparte", "dev", ["Julius Caesar", "George Washington", "Abraham Lincoln", "Queen Elizabeth II",
                                   "Barack Obama", "Isaac Newton", "Pablo Picasso", "Charles Dickens"],
     "Wolfgang Amadeus Mozart"),
    # works
    ("Mona Lisa", "dev", ["The Starry Night", "Guernica", "The Scream", "Hamlet", "Harry Potter", "Star Wars",
                          "Jurassic Park", "Oliver Twist"], "The Last Supper"),
    ("Romeo and Juliet", "test", ["Pride and Prejudice", "Oliver Twist", "Dracula", "Frankenstein", "Don Quixote",
                                  "The Hobbit", "Harry Potter", "The Adventures of Tom Sawyer", "The Hunger Games",
                                  "Charlie and the Chocolate Factory", "Sherlock Holmes", "Star Wars"], "Macbeth"),
    ("Titanic", "dev", ["Jurassic Park", "The Godfather", "Star Wars", "Batman", "Superman", "Mickey Mouse",
                        "Spider-Man", "Star Trek", "Harry Potter", "The Lord of the Rings", "Sherlock Holmes",
                        "Pride and Prejudice"], "Avatar"),
    ("Batman", "dev", ["Superman", "Spider-Man", "Mickey Mouse", "Harry Potter", "Star Wars", "Dracula",
                       "Sherlock Holmes", "Jurassic Park"], "Winnie-the-Pooh"),
    ("Mickey Mouse", "test", ["Batman", "Superman", "Spider-Man", "Harry Potter", "Star Wars", "Sherlock Holmes",
                              "Jurassic Park", "The Godfather", "The Lord of the Rings", "Pride and Prejudice",
                              "Oliver Twist", "Dracula"], "Winnie-the-Pooh"),
    # organisations
    ("NASA", "dev", ["United Nations", "Red Cross", "World Health Organization", "European Union", "Apple",
                     "Microsoft", "FIFA", "Toyota"], "Google"),
    ("Apple", "test", ["Microsoft", "Google", "Facebook", "Amazon", "Tesla Motors", "Sony", "Samsung", "IKEA",
                       "Coca-Cola", "McDonald's", "Toyota", "NASA", "United Nations"], "Nike"),
    ("Microsoft", "dev", ["Apple", "Google", "Facebook", "Amazon", "Tesla Motors", "Sony", "Samsung", "Toyota",
                          "Coca-Cola", "McDonald's", "NASA", "United Nations"], "IKEA"),
    ("Google", "test", ["Apple", "Microsoft", "Amazon", "Tesla Motors", "Sony", "Samsung", "Toyota", "IKEA"],
     "Facebook"),
    ("Facebook", "dev", ["Apple", "Microsoft", "Amazon", "Tesla Motors", "Sony", "Samsung", "Nike", "IKEA"], "Google"),
    ("Toyota", "test", ["Honda", "BMW", "Volkswagen", "Ferrari", "Sony", "Samsung", "IKEA", "Nike"], "Coca-Cola"),
    ("Coca-Cola", "dev", ["Pepsi", "McDonald's", "Nike", "IKEA", "Toyota", "BMW", "Sony", "Apple"], "Ferrari"),
    ("McDonald's", "test", ["Pepsi", "Coca-Cola", "Nike", "IKEA", "Toyota", "BMW", "Sony", "Apple"], "Honda"),
    ("FIFA", "dev", ["United Nations", "Red Cross", "World Health Organization", "European Union", "NASA", "Apple",
                     "Toyota", "Microsoft"], "Nike"),
    ("United Nations", "test", ["Red Cross", "World Health Organization", "European Union", "NASA", "FIFA", "Apple",
                                "Microsoft", "Toyota"], "IKEA"),
    # objects
    ("telephone", "dev", ["light bulb", "printing press", "airplane", "steam engine", "radio", "thermometer", "clock",
                          "scissors", "pencil"], "umbrella"),
    ("light bulb", "test", ["telephone", "printing press", "airplane", "steam engine", "radio", "compass", "scissors",
                            "pencil"], "umbrella"),
    ("telescope", "dev", ["microscope", "thermometer", "compass", "clock", "camera", "scissors", "pencil", "barometer",
                          "ruler"], "umbrella"),
    ("microscope", "test", ["telescope", "thermometer", "compass", "clock", "camera", "scissors", "pencil", "barometer",
                            "ruler"], "umbrella"),
    ("piano", "dev", ["guitar", "violin", "drum", "flute", "trumpet", "bicycle", "tricycle", "car", "clock"], "camera"),
    ("guitar", "test", ["piano", "violin", "drum", "flute", "trumpet", "bicycle", "tricycle", "car", "clock"], "camera"),
    ("bicycle", "dev", ["car", "tricycle", "guitar", "violin", "piano", "clock", "scissors", "pencil", "camera"],
     "umbrella"),
    ("compass", "test", ["thermometer", "clock", "camera", "scissors", "pencil", "barometer", "ruler", "telescope",
                         "microscope"], "umbrella"),
    ("thermometer", "dev", ["barometer", "ruler", "compass", "clock", "camera", "scissors", "pencil", "telescope"],
     "umbrella"),
    ("camera", "test", ["clock", "scissors", "pencil", "computer", "car", "bicycle", "compass", "telescope",
                        "thermometer"], "umbrella"),
]
