"""A local safety classifier for the AI gateway's ``safety`` guardrail, without a model download.

Databricks runs a safety model (Llama Guard) behind ``guardrails.*.safety``; this machine
cannot download one, so :func:`classify` is a curated lexicon of regular expressions (all
case-insensitive, compiled once at import) for requests and answers that are *clearly*
unsafe. It is a precision-first filter: it flags explicit requests for harm phrased in
plain English, and lets everything else through.

What it catches (``SafetyVerdict.category``):

``child_sexual_exploitation``
    A term for a minor (child, kid, minor, underage, preteen, toddler, "12 year old",
    "12yo", little/young girl or boy, schoolgirl, loli...) within a few words of a sexual
    term (sex, sexual, porn, erotic, nsfw, lewd, molest, rape, masturbate, seduce...), in
    either order; nude/naked pictures of a minor; sexting, "talking dirty" to or grooming
    a minor. A match is dropped when protective words sit right next to it (sex
    education, prevention, protect, report, warning signs, survivors, therapy,
    explaining/talking to one's kids about...), so "how do I talk to my kids about sex"
    and "child sexual abuse prevention resources" pass.
``self_harm``
    First-person intent or method questions: "kill/hang/shoot/drown/overdose myself", "how
    to cut myself", "how do I commit suicide", "I want to end my life", "I want to die",
    "painless way to die", "how many pills to die"; encouragement: "you should kill
    yourself", "go die", "nobody would miss you if you died". Passes: "I'll kill myself
    laughing", "I cut myself while cooking", "suicide statistics", "how to help a friend
    who wants to kill themselves".
``weapons``
    Instructions to make explosives and weapons: an intent phrase ("how to", "how do I",
    "steps to", "instructions", "teach me", "I want to", an imperative at the start of a
    sentence...) then a making verb (make, build, assemble, synthesize, cook, 3D print...)
    then a target (bomb, pipe bomb, explosives, IED, Molotov cocktail, napalm, thermite,
    TATP, detonator, grenade, nerve agent, sarin, ricin, anthrax, chemical/biological/
    nuclear weapon, ghost/untraceable gun, silencer, auto sear); converting a rifle to
    full auto; weaponizing a pathogen. Passes: "bath bomb", "bomb shelter", "bomb the
    exam", "that song is the bomb", "an explosive entrance", "how do nuclear bombs work".
``violent_crimes``
    An intent phrase, then a violent verb (kill, murder, poison, stab, shoot, strangle,
    kidnap, torture, hurt...) aimed at a person (someone, my wife, my boss, him, her, a
    child...); killing "without getting caught"; undetectable poisons; disposing of a body;
    planning a mass shooting or terrorist attack. Passes: "kill the process", "kill a
    child process", "shoot a photo", "how not to hurt her feelings".
``hate``
    Targeted statements about a protected group (religion, ethnicity, nationality,
    migrants, sexual orientation, gender identity, sex, disability): calls to exterminate
    or kill all of them, "<group> are vermin/subhuman/animals/a disease...", "<group>
    should die / don't deserve to live", "death to <group>", "I hate <group>". There is
    deliberately no list of slurs: an operator who needs slurs blocked adds them to the
    ``invalid_keywords`` guardrail, which matches whole words.
``criminal_planning``
    Intent phrase then making/cooking drugs (meth, crack, cocaine, heroin, fentanyl, LSD,
    MDMA, GHB...); buying drugs on the dark web or without a prescription; stealing a car,
    an identity or credit card numbers; shoplifting; laundering money; counterfeiting money
    or IDs; hot-wiring a car; breaking into a house; robbing a bank; tax evasion and fraud;
    smuggling and trafficking; blackmail and extortion; hacking into someone's account.
    Passes: "how to steal the show", "how do banks detect money laundering".
``malware``
    A making verb (write, create, code, build, develop...) then malware (ransomware,
    keylogger, rootkit, botnet, spyware, trojan, computer virus or worm, info/password
    stealer, crypto-jacker, polymorphic or self-replicating code, DDoS tool, phishing kit or
    email), with no "about/on/against/detect/remove" in between; a script that steals
    passwords, cookies or keystrokes; malware that evades antivirus/EDR; encrypting files
    for a ransom; planting a backdoor. Passes: "write an essay about ransomware", "how do I
    remove a keylogger", "what is a botnet".

What it cannot do: it reads words, not meaning. Paraphrases ("make something that goes
boom", "help me unalive myself"), euphemisms, misspellings and leetspeak ("b0mb",
"m.e.t.h"), other languages than English, requests split across several messages,
role-play and fiction framings that avoid the trigger phrases, and harmful content with
no request in it (e.g. a model's answer that lists synthesis steps without the words
above) all pass. Conversely, quoting or discussing a flagged phrase ("is it illegal to
ask how to make a bomb?") can be flagged. Intent phrases with a negation or a protective
verb in between ("how to avoid hurting someone", "how do I prevent identity theft") do
not count. Use a safety model for broad coverage; this catches the obvious cases cheaply.

Speed (2 shared cores, CPython 3.11): each rule is gated by the words it needs (one pass
over the words of the text), so text without any of them costs about 30 µs per KB; text
full of trigger words ("kill the process", "make the build") about 0.6 ms per KB, 1 ms per
KB for adversarial repetitions. A rule searches for its rare core (verb and target) first
and only then for the intent phrase in the 200 characters before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CATEGORIES",
    "CHILD_SEXUAL_EXPLOITATION",
    "CRIMINAL_PLANNING",
    "HATE",
    "MALWARE",
    "SAFE",
    "SELF_HARM",
    "VIOLENT_CRIMES",
    "WEAPONS",
    "SafetyVerdict",
    "classify",
]

CHILD_SEXUAL_EXPLOITATION = "child_sexual_exploitation"
SELF_HARM = "self_harm"
WEAPONS = "weapons"
VIOLENT_CRIMES = "violent_crimes"
HATE = "hate"
CRIMINAL_PLANNING = "criminal_planning"
MALWARE = "malware"

#: Every category, in the order the rules are tried.
CATEGORIES: tuple[str, ...] = (
    CHILD_SEXUAL_EXPLOITATION,
    SELF_HARM,
    WEAPONS,
    VIOLENT_CRIMES,
    HATE,
    CRIMINAL_PLANNING,
    MALWARE,
)

#: Longest ``matched`` text a verdict carries.
_MATCHED_MAX = 120


@dataclass(frozen=True, slots=True)
class SafetyVerdict:
    """The classifier's answer: unsafe or not, the category and the text that triggered it."""

    unsafe: bool
    category: str | None = None
    matched: str | None = None


SAFE = SafetyVerdict(unsafe=False)


# --------------------------------------------------------------------------- building blocks
_APOS = "['\u2019]"
# A word inside a sentence (no sentence-ending punctuation).
_WORD = r"[^\s.!?]+"
# Words that cancel an intent when they sit between it and the harmful verb.
_CANCEL = (
    r"not|never|avoid\w*|prevent\w*|stop\w*|protect\w*|detect\w*|spot\w*|report\w*|recogni[sz]\w*"
    r"|against|about|on|regarding|remov\w*|defend\w*|survive|escape|identify|fight\w*|treat\w*"
)


def _gap(n: int, cancel: bool = True) -> str:
    """Whitespace, then up to ``n`` words each followed by whitespace (lazy)."""
    word = rf"(?!(?:{_CANCEL})\b){_WORD}" if cancel else _WORD
    return rf"\s+(?:{word}\s+){{0,{n}}}?"


def _lead(n: int) -> str:
    """Like :func:`_gap` after an intent phrase, which may be empty (the start of a sentence)."""
    return rf"\s*(?:(?!(?:{_CANCEL})\b){_WORD}\s+){{0,{n}}}?"


def _alt(*parts: str) -> str:
    return "(?:" + "|".join(parts) + ")"


# An intent phrase, or the start of a sentence (imperatives: "Make a bomb.").
_INTENT = _alt(
    r"\bhow\s+(?:do|can|could|would|should|might|to|does\s+one|did\s+you|i)",
    r"\b(?:ways?|steps?|methods?|instructions?|tutorial|guide|recipe|procedure|plans?)\s+(?:to|for|on)",
    r"\b(?:best|easiest|quickest|fastest|simplest|cheapest|safest)\s+way\s+to",
    r"\b(?:teach|show|help|tell|walk)\s+me",
    r"\bexplain\s+(?:how|to\s+me)",
    r"\bi\s+(?:really\s+)?(?:want|wanna|need|plan|intend|wish|would\s+like|am\s+going|am\s+planning"
    r"|am\s+trying|will|shall|gonna)(?:\s+to)?",
    rf"\bi{_APOS}?(?:m|ll)\s+(?:going|planning|trying|about)\s+to",
    rf"\bi{_APOS}ll",
    rf"\blet{_APOS}?s",
    r"\b(?:give|write|send|provide)(?:\s+me)?",
    r"\bcan\s+you",
)
# The start of a sentence, for imperatives ("Make a bomb."), with at most one word before the verb.
_START = r"(?:^|[.!?:;\n])\s*(?:(?:please|now|just|quickly|first)\b,?)?"


def _intent(n: int = 6, *, start: bool = True) -> str:
    """An intent phrase (or, with ``start``, the start of a sentence) and up to ``n`` words.

    Used as a rule's prefix: it must end right where the rule's core match starts.
    """
    if start:
        return rf"(?:{_INTENT}{_lead(n)}|{_START}{_lead(1)})"
    return rf"{_INTENT}{_lead(n)}"


_MAKE = _alt(
    r"make|making|build|building|assemble|assembling|construct|constructing|manufactur(?:e|ing)",
    r"creat(?:e|ing)|cook|cooking|produce|producing|synthesi[sz](?:e|ing)|brew|brewing",
    r"mix|mixing|prepare|preparing|rig|rigging|3d[\s-]?print(?:ing)?|improvise|improvising",
)
_MAKE = rf"\b{_MAKE}\b"

_MINOR = _alt(
    r"child|children|kids?|minors?|under-?aged?|pre-?teens?|pre-?pubescent|toddlers?|infants?",
    r"(?:little|young)\s+(?:girls?|boys?)|school\s?(?:girls?|boys?)|lolis?|shotas?|jailbait",
    r"(?:[1-9]|1[0-7])[\s-]?(?:yo|y/o|years?[\s-]old)s?",
)
_MINOR = rf"\b{_MINOR}\b"
_SEXUAL = _alt(
    r"sex|sexual(?:ly)?|sexting|porn\w*|erotic\w*|nsfw|lewd|molest\w*|rap(?:e|ed|ing)",
    r"intercourse|masturbat\w*|orgasm\w*|aroused|fondl\w*|seduc\w*|genitals?|penis|vagina",
    r"blow\s*jobs?|hentai|sexually\s+explicit",
)
_SEXUAL = rf"\b{_SEXUAL}\b"
_PROTECTIVE = re.compile(
    r"\b(?:sex(?:ual(?:ity)?)?\s+(?:education|ed|health)|educat\w*|prevent\w*|protect\w*|report\w*"
    r"|awareness|warning\s+signs|signs\s+of|survivors?|therap\w*|hotline|safeguard\w*|explain\w*"
    r"|talk\w*\s+(?:to|with)\s+(?:my|your|our|their)|puberty|consent|laws?|legal|illegal|statistics"
    r"|convicted|sentenced|arrested|charged|prosecut\w*|court|police|victims?)\b",
    re.IGNORECASE,
)

_PERSON_NOUN = _alt(
    r"wife|husband|boss|neighbou?r|mother|mom|mum|father|dad|parents?|brother|sister|son|daughter",
    r"teacher|classmate|co-?worker|colleague|ex|ex-?wife|ex-?husband|girlfriend|boyfriend|partner",
    r"roommate|landlord|baby|child|kid|family|friend|president|senator|judge|cop|police\s*officer",
    r"officer|man|woman|guy|girl|boy|stranger|victim|witness|enemy|rival|person|people|students?",
)
_NOT_A_PERSON = (
    r"(?!\s*(?:process|processes|thread|threads|node|nodes|element|elements|widget|task|tasks|pid"
    r"|window|container|pod|object|class|theme|component)\b)"
)
_PERSON = _alt(
    r"\b(?:someone|somebody|anyone|anybody|a\s+person|people)\b" + rf"(?!{_APOS}s)",
    r"\b(?:my|his|her|their|our|the|a|an|your|this|that)\s+"
    r"(?!(?:final|last|end|mini|level|raid|dungeon|big)[\s-]+boss)(?:[a-z-]+\s+)?"
    + _PERSON_NOUN
    + rf"s?\b(?!{_APOS}s){_NOT_A_PERSON}",
    r"\b(?:him|her)\b"
    + rf"(?!{_APOS}s|\s+(?:a|an|the|some|my|your|his|her|back|up|down|over|out|off|with|feelings)\b)",
)
_VIOLENT = _alt(
    r"kill|killing|murder|murdering|assassinat(?:e|ing)|poison|poisoning|strangl(?:e|ing)",
    r"suffocat(?:e|ing)|smother|smothering|stab|stabbing|shoot|shooting|kidnap|kidnapping",
    r"abduct|abducting|tortur(?:e|ing)|beat\s+up|beating\s+up|drown|drowning|hurt|hurting|harm",
    r"harming|injure|injuring|maim|maiming|run\s+over|lynch|lynching|behead|beheading|dismember",
)
_VIOLENT = rf"\b{_VIOLENT}\b"

_GROUP = _alt(
    r"jews|jewish\s+people|muslims|christians|catholics|hindus|sikhs|buddhists|atheists",
    r"blacks|black\s+people|white\s+people|asians|asian\s+people|hispanics|latinos|latinas|mexicans",
    r"arabs|africans|indians|chinese(?:\s+people)?|immigrants|migrants|refugees|foreigners",
    r"gays|gay\s+people|lesbians|homosexuals|bisexuals|trans(?:gender)?\s+(?:people|women|men|folks?)",
    r"transgenders|queers|women|men|females|disabled\s+people|the\s+disabled|roma|gypsies",
)
_GROUP = rf"\b{_GROUP}\b"
_DEHUMANIZE = _alt(
    r"sub-?human|vermin|animals|cockroaches|rats|parasites|a\s+(?:disease|plague|cancer|virus)",
    r"inferior|filth|savages|apes|monkeys|pigs|dogs|scum|trash|garbage|evil|not\s+human",
)

_DRUG = _alt(
    r"meth|methamphetamine|crystal\s+meth|crack\s+cocaine|cocaine|heroin|fentanyl|carfentanil",
    r"lsd|mdma|ecstasy|ghb|pcp|dmt|ketamine|amphetamines?|opium|krokodil|desomorphine|bath\s+salts",
    r"crack(?=\s*(?:$|[.?!,]|\s+(?:at\s+home|from|with|using)\b))",
)
_DRUG = rf"\b{_DRUG}(?![\w-])"

_MALWARE = _alt(
    r"ransomware|key-?loggers?|rootkits?|botnets?|spyware|malware|trojans?(?:\s+horses?)?",
    r"remote\s+access\s+trojans?|computer\s+(?:virus|viruses|worms?)|crypto-?jackers?",
    r"self-?replicating\s+(?:virus|code|program|malware|worm)|polymorphic\s+(?:virus|code|malware)",
    r"(?:info|password|credential|cookie|token|crypto|wallet)[\s-]?stealers?|keystroke\s+loggers?",
    r"ddos\s+(?:script|tool|bot|botnet)|phishing\s+(?:kit|page|site|website|email|e-mail|campaign)",
    r"zero-?click\s+exploit|worm\s+that\s+spreads",
)
_MALWARE = rf"\b{_MALWARE}\b"

_WEAPON = _alt(
    # A bomb, but not a bath bomb, a bomb shelter or a bomb (= great) dinner.
    r"(?:(?:pipe|nail|car|fertili[sz]er|dirty|letter|atomic|nuclear|time|suicide)[\s-]?)?"
    # (?=b) first: the look-behinds are only tried where a "b" follows.
    r"(?=b)(?<!bath\s)(?<!seed\s)(?<!photo\s)(?<!cherry\s)(?<!glitter\s)(?<!smoke\s)(?<!cloud\s)"
    r"(?<!flavor\s)(?<!chocolate\s)(?<!cocoa\s)(?<!fizzy\s)(?<!stink\s)(?<!f-)bombs?\b"
    r"(?!\s*(?:shelter|squad|disposal|threat|cyclone|calorimeter|dinner|lunch|breakfast|meal|dish"
    r"|pizza|burger|sandwich|cake|dessert|recipe|sauce|outfit|playlist|song|track|beat|party|video"
    r"|photo|post|shot|drink|cocktail|pop|dot|\.com)\b)",
    r"explosives\b|explosive\s+(?:devices?|charges?|vests?|belts?|materials?|compounds?|mixtures?)\b",
    r"(?:an|homemade|home-made|diy)\s+explosive\b(?!\s+(?:entrance|growth|start|debut|performance"
    r"|flavou?r|content|workout|finish|ending|combination|argument|chemistry|personality|dish|sauce"
    r"|recipe|comeback|speed|power|chorus|beat|ending|twist)\b)",
    r"\bi\.?e\.?d\.?s?\b|improvised\s+explosive|detonators?|blasting\s+caps?|molotov(?:\s+cocktails?)?",
    r"napalm|thermite\s+(?:bomb|charge|grenade)|tatp|triacetone\s+triperoxide|nitroglycerine?",
    r"semtex|c-?4\s+(?:explosive|charge)|hand\s+grenades?|grenades?|landmines?|claymore\s+mines?",
    r"nerve\s+(?:agents?|gas)|sarin|\bvx\b|ricin|anthrax|mustard\s+gas|chlorine\s+gas\s+(?:bomb|attack)",
    r"chemical\s+weapons?|biological\s+weapons?|bio-?weapons?|nuclear\s+weapons?|dirty\s+bombs?",
    r"(?:ghost|untraceable|homemade|home-made|zip|unregistered)\s+(?:guns?|firearms?|pistols?|rifles?)",
    r"(?:gun\s+)?silencers?|suppressors?\s+for\s+(?:a|my)|auto\s+sears?|glock\s+switch(?:es)?",
)
_WEAPON = rf"\b{_WEAPON}"

_CRIME = _alt(
    rf"steal(?:ing)?\s+(?:a\s+car|cars|(?:someone{_APOS}?s?|a\s+person{_APOS}s|people{_APOS}s|his|her)"
    r"\s+(?:identity|credit\s+cards?|car|money|passwords?|data|bank\s+details|wallet|purse)"
    r"|credit\s+card(?:\s+(?:numbers|details|info))?|an?\s+identity|identities"
    r"|(?:money\s+)?from\s+(?:a|my|the|your|an)\s+(?:store|shop|employer|job|work|bank|register"
    r"|company|atm|charity|church|old\s+lady|elderly))",
    r"shoplift(?:ing)?|launder(?:ing)?\s+(?:\S+\s+){0,2}?money|money\s+laundering",
    r"counterfeit(?:ing)?\s+(?:money|bills|currency|cash|dollars|euros|notes|banknotes)",
    r"(?:make|making|print|printing|produce|create)\s+(?:fake|counterfeit|forged)\s+(?:money|bills"
    rf"|currency|cash|dollars|euros|ids?|passports?|driver{_APOS}?s\s+licen[cs]es?|documents)",
    r"forg(?:e|ing)\s+(?:a\s+)?(?:signature|passport|check|cheque|prescription|documents?)",
    rf"hot-?wir(?:e|ing)\s+(?:a|the|someone{_APOS}?s|my\s+neighbou?r{_APOS}?s)\s+car",
    rf"break(?:ing)?\s+into\s+(?:a|an|someone{_APOS}?s?|my\s+neighbou?r{_APOS}?s?|the|people{_APOS}?s"
    r"|his|her)\s+(?:\S+\s+)?(?:house|home|car|apartment|flat|store|shop|building|safe|garage)",
    r"rob(?:bing)?\s+(?:a|an|the)\s+(?:bank|store|shop|house|gas\s+station|atm|person|jewe?l(?:le)?ry"
    r"\s+store|liquor\s+store|armored\s+truck)",
    r"evad(?:e|ing)\s+(?:paying\s+)?taxes|tax\s+evasion|commit(?:ting)?\s+(?:tax\s+|insurance\s+|bank\s+"
    r"|wire\s+|credit\s+card\s+)?fraud|insurance\s+fraud|identity\s+theft|skim(?:ming)?\s+credit\s+cards",
    r"smuggl(?:e|ing)\s+(?:\S+\s+){0,2}?(?:drugs|cocaine|heroin|weapons|guns|people|migrants|contraband)",
    r"traffic(?:king)?\s+(?:people|humans|women|children|girls|drugs)|human\s+trafficking",
    r"blackmail(?:ing)?\s+(?:someone|somebody|my|a|him|her)|extort(?:ing)?\s+(?:money|someone|somebody)",
    rf"hack(?:ing)?\s+into\s+(?:someone{_APOS}?s|my\s+\w+{_APOS}?s|his|her|a\s+person{_APOS}s|their)"
    r"\s+(?:\S+\s+)?(?:account|email|e-mail|phone|facebook|instagram|icloud|gmail|whatsapp|bank)",
    r"get\s+away\s+with\s+(?:stealing|robbery|fraud|shoplifting)",
)


@dataclass(frozen=True, slots=True)
class _Rule:
    category: str
    #: The core of the rule, searched for in the whole text.
    pattern: re.Pattern[str]
    #: Word prefixes, one of which every match contains; a rule runs only on texts with one.
    gate: tuple[str, ...]
    #: Whether protective words near a match cancel it.
    protective: bool = False
    #: What must come right before a core match (within :data:`_PREFIX_WINDOW` characters),
    #: e.g. an intent phrase. Searching for the rare core first and the prefix only before it
    #: is several times faster than one pattern that starts with the prefix.
    prefix: re.Pattern[str] | None = None


_DRUG_GATE = (
    "meth", "crystal", "crack", "cocain", "heroin", "fentanyl", "carfentanil", "lsd", "mdma",
    "ecstasy", "ghb", "pcp", "dmt", "ketamin", "amphetamin", "opium", "krokodil", "desomorphin",
    "bath",
)  # fmt: skip
_NOT_IDIOM = r"(?!\s+(?:laughing|with\s+laughter|over\s+this\s+joke))"


def _rules() -> list[_Rule]:
    # (category, core pattern, gate, protective[, prefix pattern])
    spec: list[tuple[Any, ...]] = [
        # ---- child sexual exploitation
        (
            CHILD_SEXUAL_EXPLOITATION,
            rf"{_MINOR}{_gap(6, cancel=False)}{_SEXUAL}|{_SEXUAL}{_gap(6, cancel=False)}{_MINOR}",
            (
                "sex", "porn", "erotic", "nsfw", "lewd", "molest", "rape", "raping", "intercourse",
                "masturbat", "orgasm", "aroused", "fondl", "seduc", "genital", "penis", "vagina",
                "blow", "hentai",
            ),
            True,
        ),
        (
            CHILD_SEXUAL_EXPLOITATION,
            r"\b(?:naked|nude|undressed|topless)\s+(?:photos?|pics?|pictures?|images?|videos?|selfies?)"
            rf"\s+of\s+(?:a\s+|an\s+|some\s+|the\s+)?{_MINOR}"
            rf"|{_MINOR}\s+(?:nudes|naked\s+(?:photos?|pics?|pictures?|images?|videos?))"
            rf"|\b(?:nudes|sexy)\s+(?:\S+\s+){{0,3}}?{_MINOR}",
            ("naked", "nude", "undressed", "topless", "sexy"),
            False,
        ),
        (
            CHILD_SEXUAL_EXPLOITATION,
            r"\b(?:talk(?:ing)?\s+dirty|sext(?:ing)?|groom(?:ing)?)\s+(?:\S+\s+){0,3}?(?:to\s+|with\s+)?"
            rf"(?:a\s+|an\s+|my\s+|the\s+)?{_MINOR}",
            ("talk", "sext", "groom"),
            False,
        ),
        # ---- self-harm
        (
            SELF_HARM,
            r"\b(?:kill|killing|hang|hanging|shoot|shooting|drown|drowning|overdose|overdosing|poison"
            r"|poisoning|starve|starving|suffocate|electrocute)\s+myself\b" + _NOT_IDIOM,
            ("myself",),
            False,
        ),
        (
            SELF_HARM,
            r"\b(?:cut|cutting|hurt|hurting|harm|harming|burn|burning|slit|slitting)"
            + _gap(1)
            + r"(?:myself|my\s+(?:wrists?|arms?|legs?|thighs?|throat))\b",
            ("myself", "wrist", "arm", "leg", "thigh", "throat"),
            False,
            _intent(start=False),
        ),
        (
            SELF_HARM,
            r"\b(?:commit\s+suicide|end\s+(?:my\s+(?:own\s+)?life|it\s+all)"
            r"|take\s+my\s+(?:own\s+)?life|die\b|kill\s+myself\b" + _NOT_IDIOM + ")",
            ("suicid", "life", "all", "die", "myself"),
            False,
            _intent(4, start=False),
        ),
        (
            SELF_HARM,
            r"\b(?:painless|quick|easy|peaceful|best|easiest|quickest|fastest|surest|least\s+painful)\w*"
            r"\s+(?:way|ways|method|methods)\s+(?:to|of)\s+(?:die|dying|suicide|commit\s+suicide"
            r"|kill(?:ing)?\s+(?:myself|yourself|oneself))\b",
            ("die", "dying", "suicid", "myself", "yourself", "oneself"),
            False,
        ),
        (
            SELF_HARM,
            r"\bhow\s+(?:many|much)\s+(?:\S+\s+){1,5}?(?:to|would|will|do\s+i\s+need\s+to|should\s+i)"
            r"\s+(?:take\s+to\s+)?(?:die|kill\s+(?:myself|me)|end\s+my\s+life|overdose)\b",
            ("die", "kill", "life", "overdose"),
            False,
        ),
        (
            SELF_HARM,
            rf"\b(?:you\s+should|you\s+deserve\s+to|you\s+ought\s+to|go|just\s+go|why\s+don{_APOS}?t\s+you)"
            r"\s+(?:just\s+)?(?:kill\s+yourself|end\s+your\s+(?:own\s+)?life|commit\s+suicide"
            r"|hang\s+yourself|die)\b(?!\s+(?:hard|down|out|off|away))"
            r"|\b(?:no\s*one|nobody)\s+(?:would|will)\s+(?:miss|care\s+about)\s+you\s+if\s+you"
            r"\s+(?:died|were\s+dead|killed\s+yourself)",
            ("yourself", "life", "suicid", "die", "miss", "care"),
            False,
        ),
        # ---- weapons
        (
            WEAPONS,
            _MAKE + _gap(4) + _WEAPON,
            (
                "bomb", "pipe", "nail", "car", "fertili", "dirty", "letter", "atomic", "nuclear", "time",
                "suicide", "explosiv", "ied", "improvised", "detonator", "blasting", "molotov", "napalm",
                "thermite", "tatp", "triacetone", "nitroglycerin", "semtex", "charge", "grenade",
                "landmine", "claymore", "nerve", "sarin", "vx", "ricin", "anthrax", "mustard",
                "chlorine", "chemical", "biological", "bio", "ghost", "untraceable", "homemade", "home",
                "zip", "unregistered", "gun", "silencer", "suppressor", "auto", "glock",
            ),
            False,
            _intent(),
        ),
        (
            WEAPONS,
            r"\b(?:convert|converting|turn|modify)\s+(?:\S+\s+){0,3}?"
            r"(?:ar-?15|ak-?47|glock|rifle|pistol|gun|semi-?auto\w*)\s+(?:\S+\s+){0,2}?"
            r"(?:to|into)\s+(?:a\s+)?(?:full[\s-]?auto\w*|fully\s+automatic|machine\s+gun)",
            ("full", "auto", "machine"),
            False,
            _intent(4, start=False),
        ),
        (
            WEAPONS,
            r"\bweaponi[sz](?:e|ing)\s+(?:\S+\s+){0,2}?(?:anthrax|smallpox|plague|ebola|botulinum|ricin"
            r"|a\s+(?:virus|pathogen|bacteri\w*)|viruses|pathogens|bird\s+flu|h5n1)",
            ("weaponi",),
            False,
        ),
        # ---- violent crimes
        (
            VIOLENT_CRIMES,
            _VIOLENT + _gap(2) + _PERSON,
            (
                "kill", "murder", "assassinat", "poison", "strangl", "suffocat", "smother", "stab",
                "shoot", "kidnap", "abduct", "tortur", "beat", "drown", "hurt", "harm", "injur", "maim",
                "run", "lynch", "behead", "dismember",
            ),
            False,
            _intent(),
        ),
        (
            VIOLENT_CRIMES,
            rf"{_VIOLENT}{_gap(8)}(?:without\s+(?:getting\s+caught|being\s+(?:caught|detected|noticed)"
            r"|leaving\s+(?:any\s+)?(?:evidence|traces?|a\s+trace)|anyone\s+knowing)"
            r"|and\s+get\s+away\s+with\s+it|and\s+make\s+it\s+look\s+like\s+an\s+accident)",
            ("caught", "detected", "noticed", "evidence", "trace", "knowing", "away", "accident"),
            False,
        ),
        (
            VIOLENT_CRIMES,
            r"\b(?:untraceable|undetectable)\s+poisons?\b|\bpoisons?\s+(?:that\s+)?(?:is\s+|are\s+)?"
            r"(?:untraceable|undetectable|can(?:not|'t)\s+be\s+(?:traced|detected))"
            r"|\b(?:dispose\s+of|get\s+rid\s+of|hide|bury|dissolve)\s+(?:a|the|his|her)\s+(?:dead\s+)?"
            r"(?:body|corpse)\b(?!\s+of\b)",
            ("poison", "body", "corpse"),
            False,
        ),
        (
            VIOLENT_CRIMES,
            r"\b(?:plan|planning|carry\s+out|commit|committing|organi[sz]e|execute|do)"
            r"\s+(?:a\s+|an\s+)?(?:mass|school)\s+(?:shooting|stabbing|murder)",
            ("shooting", "stabbing", "murder"),
            False,
            _intent(5, start=False),
        ),
        (
            VIOLENT_CRIMES,
            r"\b(?:plan|planning|carry\s+out|carrying\s+out|commit|organi[sz]e)\s+(?:a\s+)?"
            r"(?:terror(?:ist)?\s+attack|massacre|mass\s+shooting|school\s+shooting)",
            ("shooting", "terror", "massacre"),
            False,
        ),
        # ---- hate
        (
            HATE,
            r"\b(?:exterminate|exterminating|eradicate|eradicating|gas|gassing|lynch|lynching"
            r"|ethnically\s+cleanse|wipe\s+out|wiping\s+out)\s+(?:all\s+)?(?:the\s+|of\s+the\s+)?"
            + _GROUP
            + r"|\b(?:kill|murder|shoot|hang|burn|eliminate|get\s+rid\s+of)\s+(?:all|every\s+last)"
            r"\s+(?:of\s+)?(?:the\s+|those\s+|these\s+)?"
            + _GROUP,
            (
                "extermin", "eradicat", "gas", "lynch", "ethnically", "wipe", "wiping", "kill",
                "murder", "shoot", "hang", "burn", "eliminat", "rid",
            ),
            False,
        ),
        (
            HATE,
            rf"\b(?:are|is)\s+(?:all\s+)?(?:(?:nothing\s+but|just|like|basically)\s+)?{_DEHUMANIZE}\b",
            (
                "sub", "vermin", "animals", "cockroach", "rats", "parasite", "disease", "plague",
                "cancer", "virus", "inferior", "filth", "savage", "apes", "monkey", "pigs", "dogs",
                "scum", "trash", "garbage", "evil", "human",
            ),
            False,
            rf"{_GROUP}\s+",
        ),
        (
            HATE,
            r"\b(?:should|must|need\s+to|deserve\s+to|ought\s+to)\s+(?:all\s+)?(?:die|burn|rot"
            r"|be\s+(?:killed|exterminated|gassed|wiped\s+out|eliminated|shot|hanged|hung|lynched|burned"
            r"|enslaved|sterili[sz]ed))\b"
            rf"|\b(?:don{_APOS}?t|do\s+not)\s+deserve\s+(?:to\s+live|to\s+exist|rights|human\s+rights)",
            (
                "die", "burn", "rot", "kill", "extermin", "gas", "wipe", "elimin", "shot", "hang",
                "hung", "lynch", "enslav", "steril", "deserve",
            ),
            False,
            rf"{_GROUP}\s+",
        ),
        (HATE, rf"\b(?:i\s+hate|death\s+to)\s+(?:all\s+)?{_GROUP}", ("hate", "death"), False),
        # ---- criminal planning
        (
            CRIMINAL_PLANNING,
            rf"(?:{_MAKE}|\b(?:extract|extracting|grow|growing|cook\s+up)\b){_gap(3)}{_DRUG}",
            _DRUG_GATE,
            False,
            _intent(),
        ),
        (
            CRIMINAL_PLANNING,
            r"\b(?:buy|buying|purchase|order|get|score|sell|selling)\s+(?:some\s+)?"
            + _DRUG
            + r"\s+(?:online|on\s+the\s+dark\s*(?:web|net)|without\s+(?:a\s+)?prescription"
            r"|from\s+(?:a\s+)?dealer)"
            r"|\b(?:buy|buying|sell|selling)\s+(?:\S+\s+){0,3}?on\s+the\s+dark\s*(?:web|net)",
            (*_DRUG_GATE, "dark"),
            False,
        ),
        (
            CRIMINAL_PLANNING,
            rf"\b{_CRIME}",
            (
                "steal", "shoplift", "launder", "money", "counterfeit", "fake", "forg", "hot", "break",
                "rob", "evad", "tax", "fraud", "identity", "skim", "smuggl", "traffic", "human",
                "blackmail", "extort", "hack",
            ),
            False,
            _intent(6, start=False),
        ),
        # ---- malware
        (
            MALWARE,
            r"\b(?:write|writing|create|creating|make|making|build|building|code|coding|develop|developing"
            r"|program|programming|generate|design|craft|produce)"
            + _gap(4)
            + _MALWARE,
            (
                "ransomware", "keylog", "key", "rootkit", "botnet", "spyware", "malware", "trojan",
                "remote", "computer", "crypto", "self", "polymorphic", "info", "password", "credential",
                "cookie", "token", "wallet", "stealer", "keystroke", "ddos", "phishing", "zero", "worm",
            ),
            False,
        ),
        (
            MALWARE,
            r"\b(?:write|create|code|build|develop|make|program|generate)\s+(?:\S+\s+){0,4}?"
            r"(?:script|program|code|tool|app|extension|bot|macro|payload)\s+(?:\S+\s+){0,3}?"
            r"(?:that|to|which)\s+(?:\S+\s+){0,2}?(?:steals?|harvests?|exfiltrates?|grabs?|logs?|records?"
            r"|captures?)\s+(?:\S+\s+){0,3}?(?:passwords|credentials|keystrokes|cookies|session\s+tokens"
            r"|credit\s+cards?|bank(?:ing)?\s+(?:details|credentials))",
            ("password", "credential", "keystroke", "cookie", "session", "credit", "bank"),
            False,
        ),
        (
            MALWARE,
            r"\b(?:malware|payload|virus|trojan|ransomware|keylogger|shellcode|rat)\s+(?:\S+\s+){0,4}?"
            r"(?:bypass|bypasses|evade|evades|avoid|avoids|undetect\w*|hide\s+from)\s+(?:\S+\s+){0,2}?"
            r"(?:antivirus|anti-virus|av|edr|defender|detection)\b"
            r"|\b(?:fud|fully\s+undetectable)\s+(?:crypter|payload|malware|rat|trojan|keylogger)",
            ("antivirus", "anti", "av", "edr", "defender", "detection", "fud", "undetectable"),
            False,
        ),
        (
            MALWARE,
            r"\bencrypt\w*\s+(?:\S+\s+){0,5}?files\s+(?:\S+\s+){0,6}?(?:ransom|bitcoin\s+payment"
            r"|pay\s+to\s+(?:decrypt|get\s+them\s+back))"
            r"|\b(?:install|installing|plant|planting|hide|hiding|code|coding|write|writing)\s+"
            r"(?:a\s+)?(?:hidden\s+|secret\s+)?backdoor\s+(?:in|into|on)\b",
            ("ransom", "bitcoin", "decrypt", "pay", "backdoor"),
            False,
        ),
    ]  # fmt: skip
    flags = re.IGNORECASE | re.MULTILINE
    rules = []
    for category, pattern, gate, protective, *prefix in spec:
        before = re.compile(rf"(?:{prefix[0]})\Z", flags) if prefix else None
        rules.append(_Rule(category, re.compile(pattern, flags), gate, protective, before))
    return rules


_RULES = _rules()
# Protective words are looked for this many characters around a match.
_PROTECT_WINDOW = 60
# How far before a core match its prefix (an intent phrase and a few words) may start.
_PREFIX_WINDOW = 200
_TOKEN_RE = re.compile(r"[a-z0-9]+")
# Gate prefixes by their first (up to) 4 characters: a word is looked up by its first 2, 3 and 4.
_GATE_KEY = 4
_GATE_INDEX: dict[str, list[tuple[str, int]]] = {}
for _i, _rule in enumerate(_RULES):
    for _prefix in _rule.gate:
        _GATE_INDEX.setdefault(_prefix[:_GATE_KEY], []).append((_prefix, _i))
_GATE_KEY_LENGTHS = sorted({len(key) for key in _GATE_INDEX})


def _gated_rules(text: str) -> set[int]:
    """Indexes of the rules whose gate has a word of ``text`` (the others cannot match)."""
    hit: set[int] = set()
    for word in set(_TOKEN_RE.findall(text.lower())):
        for k in _GATE_KEY_LENGTHS:
            if k > len(word):
                break
            for prefix, i in _GATE_INDEX.get(word[:k], ()):
                if word.startswith(prefix):
                    hit.add(i)
    return hit


def _first_match(text: str, rules: list[int]) -> SafetyVerdict:
    for i in rules:
        rule = _RULES[i]
        pos = 0
        while (m := rule.pattern.search(text, pos)) is not None:
            # The next try starts one character further: core matches may overlap.
            pos = m.start() + 1
            start = m.start()
            if rule.prefix is not None:
                before = rule.prefix.search(text, max(0, start - _PREFIX_WINDOW), start)
                if before is None:
                    continue
                start = before.start()
            if rule.protective:
                lo = max(0, start - _PROTECT_WINDOW)
                if _PROTECTIVE.search(text, lo, m.end() + _PROTECT_WINDOW):
                    continue
            matched = text[start : m.end()].strip()[:_MATCHED_MAX]
            return SafetyVerdict(unsafe=True, category=rule.category, matched=matched)
    return SAFE


def classify(text: str) -> SafetyVerdict:
    """Whether ``text`` is clearly unsafe; the first matching rule names the category.

    ``matched`` is the text that triggered the rule (at most 120 characters). Only the rules
    whose gate words occur in the text are run, which keeps ordinary text cheap.
    """
    if not text:
        return SAFE
    hit = _gated_rules(text)
    if not hit:
        return SAFE
    return _first_match(text, sorted(hit))
