"""Load and validate a pack folder; every error names file, line, rule id and field.

Validation is two-staged: the schema (pydantic), then the references (every drug or class a
rule names must exist in the knowledge base; a misspelt one gets the near name suggested).
All errors of a pack are collected and raised together.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from cds.errors import ExpressionError, PackError, PackErrors
from cds.knowledge.store import Knowledge
from cds.rules.expression import compile_expression
from cds.rules.models import PackMeta, Rule, RuleFile
from cds.rules.version import satisfies

LINES = "__lines__"
def _tags() -> frozenset[str]:
    """The rule types: pydantic's discriminator tags in an error's location."""
    (union, *_) = get_args(Rule)
    return frozenset(get_args(c.model_fields["type"].annotation)[0] for c in get_args(union))


_TAGS = _tags()
LINE = "__line__"


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers where each mapping and each of its keys starts."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping[LINE] = node.start_mark.line + 1
    mapping[LINES] = {k.value: k.start_mark.line + 1 for k, _ in node.value
                      if isinstance(k, yaml.ScalarNode)}
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def strip_marks(obj: Any) -> Any:
    """A document read by `read_yaml` without its line marks, for validation."""
    if isinstance(obj, dict):
        return {k: strip_marks(v) for k, v in obj.items() if k not in (LINE, LINES)}
    if isinstance(obj, list):
        return [strip_marks(v) for v in obj]
    return obj


def _locate(doc: Any, loc: tuple[int | str, ...]) -> tuple[int | None, str | None]:
    """Line and rule id for a pydantic error location inside a YAML document."""
    line = doc.get(LINE) if isinstance(doc, dict) else None
    rule_id = None
    node = doc
    for part in loc:
        if part in _TAGS:
            continue  # pydantic's discriminator tag, not a key the author wrote
        if isinstance(node, dict):
            if isinstance(part, str) and part in node:
                line = node.get(LINES, {}).get(part, line)
                node = node[part]
            else:
                break  # discriminator tags and missing fields: stay at the mapping
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
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
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _TAGS:
            continue  # pydantic's discriminator tag, not a field the author wrote
        else:
            out += ("." if out else "") + part
    return out


def validation_errors(exc: ValidationError, doc: Any, file: str) -> list[PackError]:
    """Each pydantic error as a PackError at the line of the document it points at."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line, rule_id = _locate(doc, loc)
        out.append(PackError(err["msg"], file=file, line=line, rule=rule_id, field=_field(loc)))
    return out


def read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise PackErrors([PackError(f"not valid YAML: {getattr(e, 'problem', e)}", file=str(path),
                                    line=mark.line + 1 if mark else None)]) from None
    except OSError as e:
        raise PackErrors([PackError(f"cannot read: {e.strerror}", file=str(path))]) from None


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


def _suggest(kb: Knowledge, name: str) -> str | None:
    candidates = list(kb.classes.graph.nodes) + list(kb.names)
    close = difflib.get_close_matches(name.lower(), candidates, n=1, cutoff=0.75)
    if not close:
        return None
    return close[0] if close[0] in kb.classes.graph else kb.names[close[0]]


def _check_value_sets(kb: Knowledge, refs: list[tuple[str, str]], file: str,
                      line: int | None, rule: str | None) -> list[PackError]:
    return [PackError(f"unknown value set {vs!r}", file=file, line=line, rule=rule, field=field,
                      suggestion=next(iter(difflib.get_close_matches(vs, list(kb.value_sets), 1)),
                                      None))
            for field, vs in refs if vs not in kb.value_sets]


def _check_refs(kb: Knowledge, loaded: LoadedRule) -> list[PackError]:
    errors = _check_value_sets(kb, loaded.rule.value_set_refs(), loaded.file, loaded.line,
                               loaded.rule.id)
    for field, name in loaded.rule.refs():
        if kb.known(name):
            continue
        alias = kb.ingredient_of(name)
        hint = f"; write the ingredient name {alias!r}" if alias else ""
        errors.append(PackError(
            f"unknown drug or class {name!r}{hint}", file=loaded.file, line=loaded.line,
            rule=loaded.rule.id, field=field, suggestion=None if alias else _suggest(kb, name)))
    return errors


def _check_expressions(kb: Knowledge, loaded: LoadedRule) -> list[PackError]:
    if not loaded.rule.when:
        return []
    try:
        compile_expression(loaded.rule.when, known=kb.known)
    except ExpressionError as e:
        return [PackError(str(e), file=loaded.file, line=loaded.line, rule=loaded.rule.id,
                          field="when")]
    return []


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
        raise PackErrors([PackError("pack.yaml must be a mapping", file=str(meta_path))])
    try:
        meta = PackMeta.model_validate(strip_marks(doc))
    except ValidationError as e:
        raise PackErrors(validation_errors(e, doc, str(meta_path))) from None
    errors: list[PackError] = []
    if meta.scope is not None:
        errors += _check_value_sets(kb, meta.scope.value_set_refs(), str(meta_path),
                                    doc[LINES].get("scope"), None)
    knowledge_line = doc[LINES].get("knowledge")
    try:
        if not satisfies(kb.version, meta.knowledge):
            errors.append(PackError(f"needs knowledge {meta.knowledge}, installed is {kb.version}",
                                    file=str(meta_path), line=knowledge_line, field="knowledge"))
    except PackError as e:
        errors.append(PackError(e.message, file=str(meta_path), line=knowledge_line,
                                field="knowledge"))
    files = sorted({p for pattern in meta.rule_files for p in folder.glob(pattern)})
    if not files:
        errors.append(PackError(f"no rule files match {meta.rule_files}", file=str(meta_path)))
    rules: list[LoadedRule] = []
    seen: dict[str, str] = {}
    for path in files:
        try:
            rdoc = read_yaml(path)
        except PackErrors as e:
            errors += e.errors
            continue
        if not isinstance(rdoc, dict):
            errors.append(PackError("a rule file must be a mapping with 'rules:'", file=str(path)))
            continue
        try:
            parsed = RuleFile.model_validate(strip_marks(rdoc))
        except ValidationError as e:
            errors += validation_errors(e, rdoc, str(path))
            continue
        for rule, raw in zip(parsed.rules, rdoc["rules"], strict=True):
            loaded = LoadedRule(rule, str(path), raw.get(LINE))
            if rule.id in seen:
                errors.append(PackError(f"duplicate rule id (first in {seen[rule.id]})",
                                        file=str(path), line=loaded.line, rule=rule.id, field="id"))
            seen[rule.id] = str(path)
            errors += _check_refs(kb, loaded)
            errors += _check_expressions(kb, loaded)
            rules.append(loaded)
    if errors:
        raise PackErrors(errors)
    digest = content_digest(folder, [meta_path, *files])
    return Pack(meta, tuple(rules), folder, digest)
