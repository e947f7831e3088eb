"""The sample gate: one rule for "is this a sample, or debris?", applied before anything is accepted.

Small models answering a JSON schema sometimes return pieces of the schema or of the prompt instead of
samples: ``items``, ``minItems``, ``required.0``, ``{"type": "array"}``, a 250-digit number, ``A``, the
task sentence, a constraint line such as ``operation: addition``, or one word repeated. The gate
rejects those with a short reason (it reads after "the sample ...", e.g. ``"echoes the task"``) and
lets real samples through; it is pure (no LLM, no I/O) so leaf synthesis, pivot generation, baselines
and the optimizers' objectives share it.

Rules, in the order they are checked (the first that fails gives the reason):

1. not empty and at most ``max_chars`` characters;
2. not a JSON fragment (text starting with ``{`` or ``[`` that parses as a JSON object or array);
3. not a JSON / JSON-schema keyword or a list of them (``items``, ``minItems``, ``type: array``, ``$defs``);
4. not a field or path name (one token such as ``textbook.book``, ``required.0``, ``items[0]``,
   ``sample_text``, ``fieldName`` or one of the prompt's field names);
5. not an echo of the task description, of a subspace constraint line or of the prompt's scaffolding
   (compared in :func:`~treesynth.models.normalize` form: the sample equals or is contained in one of
   them, consists only of the prompt's field names, has fewer than ``min_words`` words left once
   every echoed string is taken out, or holds one of DSPy's field markers such as ``[[ ## task ## ]]``,
   i.e. copies the prompt itself);
6. at least ``min_words`` whitespace-separated words containing a letter;
7. language, not numbers or symbols: letters in at least :data:`MIN_WORDY_SHARE` of the words and
   :data:`MIN_LETTER_SHARE` of the non-space characters;
8. not degenerate repetition: no word makes up more than :data:`MAX_WORD_SHARE` of the words, and long
   samples keep at least :data:`MIN_DISTINCT_SHARE` distinct words.

Structured samples (field dicts) need every declared field non-empty; their values, joined, must pass
the rules above.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from treesynth.models import normalize

MIN_WORDS = 4
"""Fewest whitespace-separated words containing a letter that a sample must have."""
MAX_CHARS = 4000
"""Most characters a sample may have (a structured sample: its values joined by spaces)."""
MIN_WORDY_SHARE = 0.5
"""Least share of a sample's whitespace-separated tokens that must contain a letter."""
MIN_LETTER_SHARE = 0.25
"""Least share of a sample's non-space characters that must be letters (low enough for LaTeX math)."""
MAX_WORD_SHARE = 0.5
"""Most share of a sample's words one single word may make up (``Alex, Alex, Alex, ...``)."""
REPEAT_MIN_WORDS = 4
"""Samples with fewer words are not checked for a dominant word (the word minimum judges them)."""
LONG_SAMPLE_WORDS = 20
"""Samples with at least this many words must also keep :data:`MIN_DISTINCT_SHARE` distinct words."""
MIN_DISTINCT_SHARE = 0.2
"""Least share of distinct words in a long sample (a phrase repeated over and over has few)."""
MIN_ECHO_WORDS = 2
"""Samples with fewer normalized words are not judged as echoes (the word minimum judges them)."""

SCHEMA_KEYWORDS = frozenset({
    "items", "minitems", "maxitems", "properties", "required", "type", "array", "string", "object", "$defs",
    "defs", "$ref", "ref", "$schema", "enum", "anyof", "allof", "oneof", "additionalproperties", "minlength",
    "maxlength", "minimum", "maximum", "integer", "number", "boolean", "null", "true", "false", "const",
    "title", "description", "default", "pattern", "format",
})
"""JSON and JSON-schema words (casefolded); a sample made only of these is schema debris."""
PROMPT_FIELD_NAMES = frozenset({
    "task", "subspace", "avoid", "sample", "samples", "pivot", "pivots", "count", "fields", "field", "items",
    "criterion", "value", "values", "reasoning", "input", "output", "json", "schema",
})
"""Field names of treesynth's prompts (casefolded); a sample made only of these (and the task's own field
names) echoes the prompt."""
PROMPT_SCAFFOLDING = (
    "Your input fields are",
    "Your output fields are",
    "All interactions will be structured in the following way, with the appropriate values filled in",
    "In adhering to this structure, your objective is",
    "Respond with a JSON object in the following order of fields",
    "Respond with the corresponding output fields",
    "must adhere to the JSON schema",
    "the value you produce",
    "what the dataset is for",
    "constraints 'criterion: value' the samples must all satisfy",
    "constraints 'criterion: value' from the root; empty at the root",
    "existing samples that must not be repeated (may be empty)",
    "the example samples",
)
"""Prompt text that is not content: DSPy's adapter boilerplate and the signatures' field descriptions."""

_FIELD_MARKER = re.compile(r"\[\[\s*##\s*\w+\s*##\s*\]\]")
"""DSPy's field marker (``[[ ## subspace ## ]]``): only a copy of the prompt holds one."""
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_KEYWORD_TOKEN = re.compile(r"\$?\w+", re.UNICODE)
_PATH = re.compile(r"\$?[A-Za-z_][\w$]*(?:(?:\.|/|::)\$?[\w$]+|\[[\w$]*\])+")
"""A dotted, slashed or indexed name: ``textbook.book``, ``required.0``, ``items[0]``, ``$defs/Batch``."""
_IDENTIFIER = re.compile(r"\$?[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+|\$?[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+")
"""A camelCase or snake_case identifier (a field name, not a word)."""
_QUOTES = " \t\r\n\"'`,:;"
_Phrases = tuple[tuple[str, re.Pattern[str], int], ...]
"""Echo phrases, longest first: normalized text, whole-word pattern, number of words."""
_CONSTRAINT_CACHE = 4096
"""Most subspaces whose normalized constraint lines a gate keeps (it starts over beyond)."""


@dataclass(frozen=True)
class SampleGate:
    """The gate for one run: the task, its field names and the thresholds; see the module docstring.

    Build it once per run and call :meth:`check` with each candidate and the subspace it was made for.
    """

    task: str
    fields: Sequence[str] = ()
    min_words: int = MIN_WORDS
    max_chars: int = MAX_CHARS
    scaffolding: Sequence[str] = PROMPT_SCAFFOLDING
    _task_norm: str = field(init=False, repr=False, compare=False)
    _prompt: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _vocabulary: frozenset[str] = field(init=False, repr=False, compare=False)
    _task_phrases: _Phrases = field(init=False, repr=False, compare=False)
    _prompt_phrases: _Phrases = field(init=False, repr=False, compare=False)
    _constraints: dict[tuple[str, ...], _Phrases] = field(init=False, repr=False, compare=False)
    """A subspace's constraint lines as phrases (a leaf's calls share one; computed once per subspace)."""

    def __post_init__(self) -> None:
        """Precompute the normalized task, scaffolding and field-name vocabulary."""
        object.__setattr__(self, "_task_norm", normalize(self.task))
        object.__setattr__(self, "_prompt", tuple(p for p in (normalize(s) for s in self.scaffolding) if p))
        names = PROMPT_FIELD_NAMES | {name.casefold() for name in self.fields}
        words = {token for name in self.fields for token in normalize(name.replace("_", " ")).split()}
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_vocabulary", names | words | SCHEMA_KEYWORDS)
        object.__setattr__(self, "_task_phrases", _phrases([self._task_norm]))
        object.__setattr__(self, "_prompt_phrases", _phrases(self._prompt))
        object.__setattr__(self, "_constraints", {})

    def check(self, sample: str | Mapping[str, object], subspace: Sequence[str] = ()) -> str | None:
        """``None`` when ``sample`` is acceptable, else a short reason (e.g. ``"echoes the task"``).

        ``sample`` is a text or a structured sample (field name -> value); ``subspace`` holds the
        ``criterion: value`` lines it was made for.
        """
        if isinstance(sample, Mapping):
            names = list(self.fields) or [str(k) for k in sample]
            values = [str(sample.get(name) or "").strip() for name in names]
            for name, value in zip(names, values, strict=True):
                if not value:
                    return f"has an empty field {name!r}"
            return self._check_text(" ".join(values), subspace)
        return self._check_text(str(sample), subspace)

    def _check_text(self, text: str, subspace: Sequence[str]) -> str | None:
        text = text.strip()
        if not text:
            return "is empty"
        if len(text) > self.max_chars:
            return f"is longer than {self.max_chars} characters"
        if _is_json_fragment(text):
            return "is a JSON fragment"
        if _only_schema_keywords(text):
            return "is a schema keyword"
        if self._is_name(text.strip(_QUOTES)):
            return "is a field or path name"
        if _FIELD_MARKER.search(text):
            return "echoes the prompt"
        norm = normalize(text)
        echo = self._echo(norm, subspace)
        if echo is not None:
            return echo
        tokens = text.split()
        wordy = sum(1 for token in tokens if _LETTER.search(token))
        if wordy < self.min_words:
            return f"has fewer than {self.min_words} words"
        visible = sum(map(len, tokens))  # str.split() splits on exactly the characters str.isspace() names
        letters = len(_LETTER.findall(text))  # a letter is never a space
        if wordy < MIN_WORDY_SHARE * len(tokens) or letters < MIN_LETTER_SHARE * visible:
            return "is mostly numbers or symbols"
        if _repetitive(norm.split()):
            return "is repetitive"
        return None

    def _is_name(self, token: str) -> bool:
        if not token or any(c.isspace() for c in token):
            return False
        return bool(_PATH.fullmatch(token) or _IDENTIFIER.fullmatch(token)) or token.casefold() in self._names

    def _echo(self, norm: str, subspace: Sequence[str]) -> str | None:
        words = norm.split()
        if len(words) < MIN_ECHO_WORDS:
            return None
        sources = (("echoes the task", self._task_phrases), ("echoes a constraint", self._constraint_phrases(subspace)),
                   ("echoes the prompt", self._prompt_phrases))
        padded = f" {norm} "
        for reason, phrases in sources:
            if any(padded in f" {phrase} " for phrase, _, _ in phrases):
                return reason
        lettered = [w for w in words if _LETTER.search(w)]
        if lettered and all(w in self._vocabulary for w in lettered):
            return "echoes the prompt"
        rest, removed = padded, Counter[str]()
        for reason, phrases in sources:
            for phrase, pattern, length in phrases:  # longest first
                if phrase not in rest:  # no match possible
                    continue
                rest, hits = pattern.subn("  ", rest)
                removed[reason] += hits * length
        if removed.total() and sum(1 for w in rest.split() if _LETTER.search(w)) < self.min_words:
            return removed.most_common(1)[0][0]
        return None

    def _constraint_phrases(self, subspace: Sequence[str]) -> _Phrases:
        """The subspace's constraint lines as phrases (normalized, empty ones dropped), memoized per subspace."""
        key = tuple(subspace)
        found = self._constraints.get(key)
        if found is None:
            if len(self._constraints) >= _CONSTRAINT_CACHE:
                self._constraints.clear()
            found = self._constraints[key] = _phrases(normalize(line) for line in subspace)
        return found


def _phrases(normalized: Iterable[str]) -> _Phrases:
    """Echo phrases, longest first: each with its whole-word pattern and its number of words (empty ones dropped)."""
    kept = sorted((p for p in normalized if p), key=len, reverse=True)
    return tuple((p, re.compile(rf"(?<=\s){re.escape(p)}(?=\s)"), len(p.split())) for p in kept)


def check_sample(sample: str | Mapping[str, object], *, task: str, subspace: Sequence[str] = (),
                 fields: Sequence[str] = (), min_words: int = MIN_WORDS, max_chars: int = MAX_CHARS) -> str | None:
    """One-off form of :meth:`SampleGate.check`: ``None`` if ``sample`` is acceptable, else the reason."""
    return SampleGate(task=task, fields=tuple(fields), min_words=min_words, max_chars=max_chars).check(
        sample, subspace)


def _only_schema_keywords(text: str) -> bool:
    """Whether every token of ``text`` holding a letter is a JSON-schema keyword (and there is one)."""
    keywords = (t for t in _KEYWORD_TOKEN.findall(text.casefold()) if _LETTER.search(t))
    first = next(keywords, None)
    return first is not None and first in SCHEMA_KEYWORDS and all(t in SCHEMA_KEYWORDS for t in keywords)


def _is_json_fragment(text: str) -> bool:
    if text[0] not in "{[":
        return False
    try:
        return isinstance(json.loads(text), dict | list)
    except ValueError:
        return False


def _repetitive(words: list[str]) -> bool:
    if len(words) < REPEAT_MIN_WORDS:
        return False
    top = Counter(words).most_common(1)[0][1]
    if top > MAX_WORD_SHARE * len(words):
        return True
    return len(words) >= LONG_SAMPLE_WORDS and len(set(words)) < MIN_DISTINCT_SHARE * len(words)
