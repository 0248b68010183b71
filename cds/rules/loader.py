"""Load and validate a pack folder; every error names file, line, rule id and field.

Validation is two-staged: the schema (pydantic), then the references (every drug or class a
rule names must exist in the knowledge base; a misspelt one gets the near name suggested).
All errors of a pack are collected and raised together.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from cds.errors import ExpressionError, FieldError, PackError, PackErrors
from cds.knowledge.store import Knowledge
from cds.rules.expression import compile_expression
from cds.rules.messages import plain
from cds.rules.models import PackMeta, Rule, RuleFile
from cds.rules.version import satisfies

LINES = "__lines__"
#: key -> the line of each item of its sequence value (a misspelt drug in `a: [x, y]` is found
#: on its own line in a block list)
ITEMS = "__items__"
MARKS = frozenset({"__line__", LINES, ITEMS})


def _tags() -> frozenset[str]:
    """The rule types: pydantic's discriminator tags in an error's location."""
    (union, *_) = get_args(Rule)
    return frozenset(get_args(c.model_fields["type"].annotation)[0] for c in get_args(union))


_TAGS = _tags()
LINE = "__line__"


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers where each mapping and each of its keys starts."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    first: dict[str, int] = {}
    for key, _ in node.value:  # a key written twice: YAML keeps the last, silently
        if isinstance(key, yaml.ScalarNode):
            if key.value in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key.value!r} is written twice (first on line "
                    f"{first[key.value]})", key.start_mark)
            first[key.value] = key.start_mark.line + 1
    mapping: dict[str, Any] = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping[LINE] = node.start_mark.line + 1
    mapping[LINES] = {k.value: k.start_mark.line + 1 for k, _ in node.value
                      if isinstance(k, yaml.ScalarNode)}
    mapping[ITEMS] = {k.value: [i.start_mark.line + 1 for i in v.value] for k, v in node.value
                      if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.SequenceNode)}
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _construct_timestamp(loader: _LineLoader, node: yaml.ScalarNode) -> Any:
    """A date-shaped value that is no date (2026-13-01) stays text, so the schema says which
    field is wrong instead of the YAML reader failing without a line."""
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def strip_marks(obj: Any) -> Any:
    """A document read by `read_yaml` without its line marks, for validation."""
    if isinstance(obj, dict):
        return {k: strip_marks(v) for k, v in obj.items() if k not in MARKS}
    if isinstance(obj, list):
        return [strip_marks(v) for v in obj]
    return obj


def _is_tag(loc: tuple[int | str, ...], i: int) -> bool:
    """Is loc[i] pydantic's discriminator tag (a rule type right after a list index), not a
    key the author wrote (pack.yaml's `escalation` is both a key and a rule type)?"""
    return loc[i] in _TAGS and i > 0 and isinstance(loc[i - 1], int)


def _locate(doc: Any, loc: tuple[int | str, ...]) -> tuple[int | None, str | None]:
    """Line and rule id for a pydantic error location inside a YAML document."""
    line = doc.get(LINE) if isinstance(doc, dict) else None
    rule_id = None
    node = doc
    item_lines: list[int] = []  # the lines of the items of the list just entered
    for i, part in enumerate(loc):
        if _is_tag(loc, i):
            continue  # pydantic's discriminator tag, not a key the author wrote
        if isinstance(node, dict):
            if isinstance(part, str) and part in node:
                line = node.get(LINES, {}).get(part, line)
                item_lines = node.get(ITEMS, {}).get(part, [])
                node = node[part]
            else:
                break  # missing fields: stay at the mapping
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            line = item_lines[part] if part < len(item_lines) else line
            node = node[part]
        else:
            break
        if isinstance(node, dict):
            line = node.get(LINE, line)
            if "id" in node and isinstance(node.get("id"), str) and "type" in node:
                rule_id = node["id"]
    return line, rule_id


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_tag(loc, i):
            continue  # pydantic's discriminator tag, not a field the author wrote
        else:
            out += ("." if out else "") + part
    return out


def _parts(field: str) -> list[int | str]:
    """'unless[0].value_sets' -> ['unless', 0, 'value_sets']."""
    out: list[int | str] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field):
        out.append(int(index) if index else name)
    return out


def line_of(doc: Any, field: str, value: object = None) -> int | None:
    """The line of `field` (a dotted path as errors name it) in a document read by
    `read_yaml`; with `value`, the line of that item of the field's list when it is there."""
    parts = _parts(field)
    line, _ = _locate(doc, tuple(parts))
    if value is None or not parts or not isinstance(parts[-1], str):
        return line
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return line
    if isinstance(node, dict) and isinstance(node.get(parts[-1]), list):
        items, lines = node[parts[-1]], node.get(ITEMS, {}).get(parts[-1], [])
        for item, item_line in zip(items, lines, strict=False):
            if item == value:
                return item_line
    return line


def _allowed_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the mapping at `loc` accepts (the model there, by its aliases)."""
    models = [root]
    for i, part in enumerate(loc):
        if isinstance(part, int):
            continue
        if _is_tag(loc, i):
            models = [m for m in models if "type" in m.model_fields
                      and get_args(m.model_fields["type"].annotation) == (part,)]
            continue
        inner: list[type[BaseModel]] = []
        for m in models:
            info = next((f for n, f in m.model_fields.items() if (f.alias or n) == part), None)
            if info is not None:
                inner += _models_in(info.annotation)
        models = inner
    if len(models) != 1:
        return []
    return sorted((f.alias or n) for n, f in models[0].model_fields.items())


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The model classes a type holds (through list, Optional, Annotated and unions)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in get_args(tp) for m in _models_in(a)]


def validation_errors(exc: ValidationError, doc: Any, file: str,
                      root: type[BaseModel] | None = None) -> list[PackError]:
    """Each pydantic error in plain words, at the line of the field it points at."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):  # a model check about one of its fields
            loc += (cause.field,)
        line, rule_id = _locate(doc, loc)
        field = _field(loc)
        allowed = (_allowed_keys(root, loc[:-1]) if root is not None
                   and err["type"] == "extra_forbidden" else None)
        message, suggestion = plain(err, field, allowed)
        out.append(PackError(message, file=file, line=line, rule=rule_id, field=field or None,
                             suggestion=suggestion))
    return out


def _yaml_error(e: yaml.YAMLError, text: str, path: Path) -> PackError:
    """'not valid YAML' at the line the parser (or the reader, for a control character)
    stopped on."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(e, "problem", None)
    if isinstance(e, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(e.position, 0)) + 1
        char = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or " ")
        problem = f"the character {chr(char)!r} (U+{char:04X}) is not allowed in YAML"
    return PackError(f"not valid YAML: {problem or e}", file=str(path), line=line)


def read_yaml(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PackErrors([PackError(f"cannot read: {e.strerror}", file=str(path))]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PackErrors([PackError(f"not UTF-8 text (byte {e.start})", file=str(path),
                                    line=data.count(b"\n", 0, e.start) + 1)]) from None
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise PackErrors([_yaml_error(e, text, path)]) from None
    except RecursionError:
        raise PackErrors([PackError("not valid YAML: nested too deeply", file=str(path),
                                    line=1)]) from None


@dataclass(frozen=True)
class LoadedRule:
    rule: Rule
    file: str
    line: int | None


@dataclass(frozen=True)
class Pack:
    meta: PackMeta
    rules: tuple[LoadedRule, ...]
    path: Path
    digest: str

    @property
    def ref(self) -> str:
        return f"{self.meta.id}@{self.meta.version}"

    @property
    def id(self) -> str:
        return self.meta.id

    @property
    def version(self) -> str:
        return self.meta.version

    def rule(self, rule_id: str) -> Rule | None:
        for r in self.rules:
            if r.rule.id == rule_id:
                return r.rule
        return None


def suggest_name(kb: Knowledge, name: str) -> str | None:
    """The drug or class id near a misspelt name (an ingredient for a near salt or brand)."""
    candidates = list(kb.classes.graph.nodes) + list(kb.names)
    close = difflib.get_close_matches(name.lower(), candidates, n=1, cutoff=0.75)
    if not close:
        return None
    return close[0] if close[0] in kb.classes.graph else kb.names[close[0]]


def _check_value_sets(kb: Knowledge, refs: list[tuple[str, str]], file: str,
                      doc: Any, rule: str | None, prefix: str = "") -> list[PackError]:
    return [PackError(f"unknown value set {vs!r}", file=file,
                      line=line_of(doc, prefix + field, vs), rule=rule, field=field,
                      suggestion=next(iter(difflib.get_close_matches(vs, list(kb.value_sets), 1)),
                                      None))
            for field, vs in refs if vs not in kb.value_sets]


def _check_refs(kb: Knowledge, loaded: LoadedRule, raw: Any) -> list[PackError]:
    errors = _check_value_sets(kb, loaded.rule.value_set_refs(), loaded.file, raw,
                               loaded.rule.id)
    for field, name in loaded.rule.refs():
        if kb.known(name):
            continue
        alias = kb.ingredient_of(name)
        hint = f"; write the ingredient name {alias!r}" if alias else ""
        errors.append(PackError(
            f"unknown drug or class {name!r}{hint}", file=loaded.file,
            line=line_of(raw, field, name) or loaded.line, rule=loaded.rule.id, field=field,
            suggestion=None if alias else suggest_name(kb, name)))
    return errors


def expression_suggestion(kb: Knowledge, e: ExpressionError) -> str | None:
    """The near name for an unknown drug or class inside an expression."""
    if e.suggestion is not None:
        return e.suggestion
    m = re.match(r"unknown drug or class '([^']+)'", e.message)
    if not m:
        return None
    alias = kb.ingredient_of(m.group(1))
    return alias or suggest_name(kb, m.group(1))


def _check_expressions(kb: Knowledge, loaded: LoadedRule, raw: Any) -> list[PackError]:
    if not loaded.rule.when:
        return []
    try:
        compile_expression(loaded.rule.when, known=kb.known)
    except ExpressionError as e:
        return [PackError(e.message, file=loaded.file,
                          line=line_of(raw, "when") or loaded.line, rule=loaded.rule.id,
                          field="when", suggestion=expression_suggestion(kb, e))]
    return []


def _rule_files(folder: Path, meta: PackMeta, meta_path: Path, doc: dict[str, Any]
                ) -> tuple[list[Path], list[PackError]]:
    """The files `rule_files` names, each pattern relative to the pack folder."""
    line = doc[LINES].get("rule_files") or doc.get(LINE)
    errors: list[PackError] = []
    files: set[Path] = set()

    def error(message: str) -> None:
        errors.append(PackError(message, file=str(meta_path), line=line, field="rule_files"))

    for pattern in meta.rule_files:
        if not pattern.strip():
            error("an empty pattern: write a pattern relative to the pack folder, like "
                  "'rules/*.yaml'")
            continue
        if Path(pattern).is_absolute() or Path(pattern).drive or ".." in Path(pattern).parts:
            error(f"pattern {pattern!r} must stay inside the pack folder: write it relative to "
                  "the pack folder, like 'rules/*.yaml'")
            continue
        try:
            matched = sorted(folder.glob(pattern))
        except (ValueError, NotImplementedError, OSError) as e:
            error(f"pattern {pattern!r} is not a file pattern ({e})")
            continue
        found = [p for p in matched if p.is_file()]
        if matched and not found:
            error(f"pattern {pattern!r} matches a folder, not files: write e.g. "
                  f"'{pattern.rstrip('/')}/*.yaml'")
            continue
        files.update(found)
    if not files and not errors:
        error(f"no rule files match {meta.rule_files}")
    return sorted(files), errors


def content_digest(folder: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(str(p.relative_to(folder)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def load_pack(folder: Path | str, kb: Knowledge) -> Pack:
    """Load one pack folder; raise PackErrors listing every problem found."""
    folder = Path(folder)
    meta_path = folder / "pack.yaml"
    if not meta_path.is_file():
        raise PackErrors([PackError("no pack.yaml in the pack folder", file=str(folder))])
    doc = read_yaml(meta_path)
    if not isinstance(doc, dict):
        raise PackErrors([PackError(
            "pack.yaml must be a mapping of fields (id: ..., version: ..., title: ...), not "
            + ("an empty file" if doc is None else f"a {_kind(doc)}"),
            file=str(meta_path), line=1)])
    try:
        meta = PackMeta.model_validate(strip_marks(doc))
    except ValidationError as e:
        raise PackErrors(validation_errors(e, doc, str(meta_path), PackMeta)) from None
    errors: list[PackError] = []
    if meta.scope is not None:
        errors += _check_value_sets(kb, meta.scope.value_set_refs(), str(meta_path), doc, None)
    knowledge_line = doc[LINES].get("knowledge")
    try:
        if not satisfies(kb.version, meta.knowledge):
            errors.append(PackError(f"needs knowledge {meta.knowledge}, installed is {kb.version}",
                                    file=str(meta_path), line=knowledge_line, field="knowledge"))
    except PackError as e:
        errors.append(PackError(e.message, file=str(meta_path), line=knowledge_line,
                                field="knowledge"))
    files, file_errors = _rule_files(folder, meta, meta_path, doc)
    errors += file_errors
    rules: list[LoadedRule] = []
    seen: dict[str, str] = {}
    for path in files:
        try:
            rdoc = read_yaml(path)
        except PackErrors as e:
            errors += e.errors
            continue
        if not isinstance(rdoc, dict):
            errors.append(PackError(
                "a rule file must be a mapping with 'rules:' (a list of rules), not "
                + ("an empty file" if rdoc is None else f"a {_kind(rdoc)}"),
                file=str(path), line=1, field="rules"))
            continue
        try:
            parsed = RuleFile.model_validate(strip_marks(rdoc))
        except ValidationError as e:
            errors += validation_errors(e, rdoc, str(path), RuleFile)
            continue
        for rule, raw in zip(parsed.rules, rdoc["rules"], strict=True):
            loaded = LoadedRule(rule, str(path), raw.get(LINE))
            if rule.id in seen:
                errors.append(PackError(f"duplicate rule id (first in {seen[rule.id]})",
                                        file=str(path), line=line_of(raw, "id") or loaded.line,
                                        rule=rule.id, field="id"))
            seen[rule.id] = str(path)
            errors += _check_refs(kb, loaded, raw)
            errors += _check_expressions(kb, loaded, raw)
            rules.append(loaded)
    if errors:
        raise PackErrors(errors)
    site = folder / "knowledge"  # the pack's own site knowledge (cds/rules/overlay.py)
    extra = sorted(p for p in site.iterdir() if p.is_file()) if site.is_dir() else []
    digest = content_digest(folder, [meta_path, *files, *extra])
    return Pack(meta, tuple(rules), folder, digest)


def _kind(value: object) -> str:
    return {list: "list", str: "text", int: "number", float: "number", bool: "true/false"
            }.get(type(value), type(value).__name__)
