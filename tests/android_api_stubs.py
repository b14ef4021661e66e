"""Signature stubs of the Android ML runtimes, generated from recorded API facts.

This module owns turning `../shared/android-api/api.json` (the public Java API of the LiteRT,
ONNX Runtime and ExecuTorch Maven artifacts, read with javap from classes built at recorded
upstream commits; see that folder's README) into Java sources whose every method body throws.
Compiled, they stand in for the real AARs when tests/test_android_app.py compiles the engine
modules with javac, so a call the runtime does not have fails the build here exactly as it
would in Android Studio. Nothing here describes an API by hand: a class, member, return type or
exception absent from the facts is absent from the stubs. The generated sources live only in a
temporary directory of the test run and are never committed.

Rules (from the facts' README): nested classes are written inside their outer class; constants
get their recorded value and other final fields a non-constant initializer; a class without
recorded constructors gets a package-private no-argument one; the `absent`/`dependency` external
types are empty placeholders that are compiled with the stubs and then deleted (the artifacts do
not contain them), and `stubs_needed` types are empty placeholders kept on the class path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_DIR_ENV = "FREENET_ANDROID_API"
PRIMITIVE_ZERO = {"boolean": "false", "byte": "(byte) 0", "short": "(short) 0", "char": "(char) 0",
                  "int": "0", "long": "0L", "float": "0f", "double": "0d"}
# A value of each primitive type that javac does not fold into a compile-time constant.
PRIMITIVE_RUNTIME = {"boolean": '"".isEmpty()', "byte": '(byte) "".length()',
                     "short": '(short) "".length()', "char": '(char) "".length()',
                     "int": '"".length()', "long": '(long) "".length()', "float": '(float) "".length()',
                     "double": '(double) "".length()'}


def default_api_json(root: Path) -> Path:
    """The facts file: $FREENET_ANDROID_API, else ../shared/android-api/api.json beside the repo."""
    if os.environ.get(API_DIR_ENV):
        return Path(os.environ[API_DIR_ENV]) / "api.json"
    for base in (root, *root.parents):
        candidate = base / "shared" / "android-api" / "api.json"
        if candidate.is_file():
            return candidate
    return root.parent / "shared" / "android-api" / "api.json"


def src_type(t: str) -> str:
    """A javap type as Java source: nested `$` becomes `.`."""
    return t.replace("$", ".")


def _simple(name: str) -> str:
    return name.rsplit(".", 1)[-1].rsplit("$", 1)[-1]


def _package(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _zero(t: str) -> str:
    t = t.strip()
    if t in PRIMITIVE_ZERO:
        return PRIMITIVE_ZERO[t]
    return f"({src_type(_erase(t))}) null"


def _erase(t: str) -> str:
    """Drops generic arguments (for casts): `java.util.List<X>` -> `java.util.List`."""
    out, depth = [], 0
    for ch in t:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    erased = "".join(out)
    return erased.replace("...", "[]")


def _params(params: list[str]) -> str:
    return ", ".join(f"{src_type(p)} p{i}" for i, p in enumerate(params))


def _throws(throws: list[str] | None) -> str:
    return f" throws {', '.join(src_type(t) for t in throws)}" if throws else ""


def _mods(mods: list[str], drop: tuple[str, ...] = ()) -> str:
    kept = [m for m in mods if m not in drop]
    return " ".join(kept) + " " if kept else ""


@dataclass
class Stubs:
    """Compiled stubs: one class directory per artifact, plus the kept placeholders."""

    classes: dict[str, Path]  # "group:artifact" -> class dir holding only that artifact's classes
    needed: Path  # fbjni / nativeloader / androidx.annotation placeholders
    provenance: dict[str, dict[str, Any]]


class _Writer:
    def __init__(self, classes: dict[str, dict[str, Any]]) -> None:
        self.classes = classes  # binary name -> class record
        self.children: dict[str, list[str]] = {}
        for name, c in classes.items():
            if c.get("outer"):
                self.children.setdefault(c["outer"], []).append(name)

    def super_call(self, c: dict[str, Any]) -> str:
        sup = c.get("superclass")
        rec = self.classes.get(_erase(sup)) if sup else None
        if rec is None or rec["kind"] == "enum":
            return ""  # java.lang.Object, Exception, ...: an accessible no-arg constructor exists
        ctors = rec.get("constructors") or []
        if not ctors or any(not k["params"] for k in ctors):
            return ""
        args = ", ".join(_zero(p) for p in ctors[0]["params"])
        return f"super({args}); "

    def field(self, f: dict[str, Any], in_interface: bool) -> str:
        mods = f["modifiers"]
        decl = f"{_mods(mods)}{src_type(f['type'])} {f['name']}"
        if "value" in f:
            v = f["value"]
            t = f["type"]
            if t == "long":
                v = v.rstrip("lL") + "L"
            elif t == "float" and not v.endswith(("f", "F")):
                v += "f"
            elif t == "char" and not v.startswith("'"):
                v = f"(char) {v}"
            elif t in ("byte", "short"):
                v = f"({t}) {v}"
            return f"{decl} = {v};"
        if "final" in mods or in_interface:
            t = f["type"]
            return f"{decl} = {PRIMITIVE_RUNTIME.get(t, 'null')};"
        return f"{decl};"

    def method(self, m: dict[str, Any], kind: str) -> str:
        mods = list(m["modifiers"])
        tp = f"<{', '.join(src_type(t) for t in m['type_parameters'])}> " if m.get("type_parameters") else ""
        head = (f"{'@Deprecated ' if m.get('deprecated') else ''}{_mods(mods)}{tp}{src_type(m['returns'])} "
                f"{m['name']}({_params(m['params'])}){_throws(m.get('throws'))}")
        if kind == "annotation":
            default = ""
            if m.get("has_default"):
                r = m["returns"]
                default = " default " + (PRIMITIVE_ZERO.get(r) or ('""' if r == "java.lang.String"
                                                                   else "{}" if r.endswith("[]")
                                                                   else "Object.class"))
            return f"{src_type(m['returns'])} {m['name']}(){default};"
        if "abstract" in mods:
            return head + ";"
        return head + ' { throw new UnsupportedOperationException("stub"); }'

    def klass(self, name: str, indent: str = "") -> str:
        c = self.classes[name]
        kind = c["kind"]
        simple = _simple(name)
        keyword = {"class": "class", "abstract class": "abstract class", "interface": "interface",
                   "enum": "enum", "annotation": "@interface"}[kind]
        mods = [m for m in c["modifiers"] if not (kind in ("enum", "interface", "annotation")
                                                  and m in ("final", "abstract"))]
        tp = f"<{', '.join(src_type(t) for t in c['type_parameters'])}>" if c.get("type_parameters") else ""
        head = f"{'@Deprecated ' if c.get('deprecated') else ''}{_mods(mods)}{keyword} {simple}{tp}"
        sup = c.get("superclass")
        if kind in ("class", "abstract class") and sup and sup != "java.lang.Object":
            head += f" extends {src_type(sup)}"
        ifaces = [i for i in c.get("interfaces", []) if kind != "annotation"]
        if ifaces:
            head += (" extends " if kind == "interface" else " implements ") + ", ".join(map(src_type, ifaces))
        lines = [indent + head + " {"]
        inner = indent + "  "
        if kind == "enum":
            consts = list(c.get("enum_constants", []))
            consts += [d for d in c.get("deprecated_enum_constants", []) if d not in consts]
            deprecated = set(c.get("deprecated_enum_constants", []))
            lines.append(inner + ", ".join(("@Deprecated " if k in deprecated else "") + k for k in consts) + ";")
        for f in c.get("fields", []):
            lines.append(inner + self.field(f, kind in ("interface", "annotation")))
        if kind in ("class", "abstract class"):
            ctors = c.get("constructors") or []
            for k in ctors:
                lines.append(f"{inner}{_mods(k['modifiers'])}{simple}({_params(k['params'])})"
                             f"{_throws(k.get('throws'))} {{ {self.super_call(c)}}}")
            if not ctors:
                lines.append(f"{inner}{simple}() {{ {self.super_call(c)}}}")
        for m in c.get("methods", []):
            if kind == "enum" and m["name"] in ("values", "valueOf") and "static" in m["modifiers"]:
                continue  # implicit in every enum
            lines.append(inner + self.method(m, kind))
        for child in sorted(self.children.get(name, [])):
            lines.append(self.klass(child, inner))
        lines.append(indent + "}")
        return "\n".join(lines)


def _placeholder(name: str, kind: str, type_parameters: int = 0) -> str:
    keyword = {"interface": "interface", "class": "class", "annotation": "@interface",
               "abstract class": "abstract class", "enum": "enum"}[kind]
    tp = f"<{', '.join(f'T{i}' for i in range(type_parameters))}>" if type_parameters else ""
    return f"package {_package(name)};\npublic {keyword} {_simple(name)}{tp} {{}}\n"


def _write(root: Path, name: str, text: str) -> Path:
    path = root / (name.replace(".", "/") + ".java")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def generate_sources(api: dict[str, Any], out: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Writes stub, placeholder and kept-placeholder sources; returns the three file lists."""
    records = {c["name"]: c for a in api["artifacts"].values() for c in a["classes"]}
    writer = _Writer(records)
    stubs = []
    for name, c in records.items():
        if c.get("outer"):
            continue
        stubs.append(_write(out / "stubs", name, f"package {_package(name)};\n\n{writer.klass(name)}\n"))
    external = [_write(out / "external", name, _placeholder(name, t["kind"], t.get("type_parameters", 0)))
                for name, t in api["external_types"].items() if t["status"] in ("absent", "dependency")]
    needed = [_write(out / "needed", name, _placeholder(name, kind))
              for name, kind in api["stubs_needed"].items()]
    return stubs, external, needed


def build(api_json: Path, android_jar: Path, out: Path) -> Stubs:
    """Generates and compiles the stubs; returns one class directory per artifact."""
    api = json.loads(api_json.read_text())
    stubs, external, needed = generate_sources(api, out / "src")
    all_classes = out / "all"
    all_classes.mkdir(parents=True)
    # The JDK supplies the `platform` types (java.util.Optional, java.nio.file.Path) here, as it
    # did for the real class files; android.jar supplies android.*.
    _javac(["--release", "8", "-cp", str(android_jar), "-d", str(all_classes),
            *map(str, stubs + external)])
    for path in external:
        rel = path.relative_to(out / "src" / "external").with_suffix(".class")
        (all_classes / rel).unlink()
    needed_dir = out / "needed"
    _javac(["--release", "8", "-d", str(needed_dir), *map(str, needed)])
    per_artifact: dict[str, Path] = {}
    for artifact, rec in api["artifacts"].items():
        target = out / "artifacts" / artifact.replace(":", "_")
        for c in rec["classes"]:
            rel = Path(c["name"].replace(".", "/") + ".class")
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(all_classes / rel, target / rel)
        per_artifact[artifact] = target
    return Stubs(classes=per_artifact, needed=needed_dir,
                 provenance={a: r["provenance"] for a, r in api["artifacts"].items()})


def _javac(args: list[str]) -> None:
    proc = subprocess.run(["javac", "-nowarn", "-encoding", "UTF-8", "-Xmaxerrs", "50", *args],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"javac could not compile the generated stubs:\n{proc.stderr[-6000:]}")


def gradle_dependencies(build_gradle: str, catalog: dict[str, Any]) -> list[str]:
    """Maven coordinates (group:artifact) of a module's `implementation libs.x.y` lines."""
    libraries = catalog["libraries"]
    out = []
    for alias in re.findall(r"^\s*implementation\s+libs\.([A-Za-z0-9_.]+)", build_gradle, re.M):
        key = alias.replace(".", "-")
        if key in libraries:
            out.append(libraries[key]["module"])
    return out
