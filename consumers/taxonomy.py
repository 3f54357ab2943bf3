"""The change-type taxonomy of SVG step 1: one vague request template per kind of change.

Every request names the function and its file, says the trouble may lie in it or in code it
calls or that calls it, and never says what the fix is: vagueness is what makes the teacher
produce refactors, documentation and robustness work as well as bug fixes.
"""

from __future__ import annotations

from dataclasses import dataclass

_SCOPE = (
    " The cause may be in `{function}` itself, in something it calls, or in the code that "
    "calls it. Look into it and change what you think needs changing."
)


@dataclass(frozen=True)
class ChangeType:
    """One taxonomy entry: `template` takes `{function}` and `{file}`."""

    key: str
    title: str
    template: str


def _entry(key: str, concern: str) -> ChangeType:
    return ChangeType(key, key.replace("_", " "), concern + _SCOPE)


TAXONOMY: tuple[ChangeType, ...] = (
    _entry(
        "resource_lifecycle",
        "Something about how `{function}` in `{file}` acquires and "
        "releases things (files, connections, locks, handles) does not look right.",
    ),
    _entry(
        "validation_and_type_safety",
        "`{function}` in `{file}` seems too trusting of the values and types it is handed.",
    ),
    _entry(
        "error_handling",
        "When something goes wrong around `{function}` in `{file}`, what "
        "happens next is not what a caller would want.",
    ),
    _entry(
        "state_consistency",
        "After `{function}` in `{file}` runs, the object or module "
        "state it touches can end up not quite agreeing with itself.",
    ),
    _entry(
        "configuration_and_initialization",
        "The way `{function}` in `{file}` picks up its settings and defaults feels fragile.",
    ),
    _entry(
        "concurrency",
        "`{function}` in `{file}` may not behave well when more than one "
        "thread or process gets involved.",
    ),
    _entry(
        "api_contracts",
        "What `{function}` in `{file}` promises to its callers and what it "
        "actually does seem to have drifted apart.",
    ),
    _entry(
        "performance",
        "`{function}` in `{file}` does more work than it should for what it delivers.",
    ),
    _entry(
        "dependency_coupling",
        "`{function}` in `{file}` leans on other parts of the code in "
        "a way that makes it easy to break.",
    ),
    _entry(
        "control_flow",
        "Some path through `{function}` in `{file}` does not go where one would expect.",
    ),
    _entry(
        "data_transformation",
        "The data coming out of `{function}` in `{file}` is not "
        "always shaped the way the data going in suggests it should be.",
    ),
    _entry(
        "async_and_callbacks",
        "The timing of callbacks, awaits or deferred work around "
        "`{function}` in `{file}` looks suspicious.",
    ),
    _entry(
        "boundary_conditions",
        "`{function}` in `{file}` might misbehave at the edges: "
        "empty inputs, single elements, limits, off-by-one territory.",
    ),
    _entry(
        "maintainability_and_docs",
        "`{function}` in `{file}` is harder to understand and keep up to date than it needs to be.",
    ),
    _entry(
        "security_and_input_sanitization",
        "Input that reaches `{function}` in `{file}` "
        "may not be handled as carefully as untrusted input deserves.",
    ),
    _entry(
        "modularity",
        "`{function}` in `{file}` seems to be doing several jobs that would sit better apart.",
    ),
    _entry(
        "testing_and_observability",
        "It is hard to see what `{function}` in `{file}` is "
        "doing, or to check that it does it right.",
    ),
    _entry(
        "platform_compatibility",
        "`{function}` in `{file}` may assume things about the "
        "operating system, Python version or environment that do not always hold.",
    ),
    _entry(
        "business_logic",
        "The result `{function}` in `{file}` produces does not seem to "
        "match what this code is meant to do for its users.",
    ),
    _entry(
        "robustness_and_recovery",
        "When `{function}` in `{file}` meets an unexpected "
        "situation, the program does not recover gracefully.",
    ),
    _entry(
        "scalability",
        "`{function}` in `{file}` might cope with small inputs but struggle as they grow.",
    ),
    _entry(
        "convention_adherence",
        "`{function}` in `{file}` does not follow the habits the rest of this codebase follows.",
    ),
    _entry(
        "complexity", "`{function}` in `{file}` is more complicated than the problem it solves."
    ),
    _entry(
        "component_interaction",
        "The hand-off between `{function}` in `{file}` and the "
        "components it talks to is not as smooth as it should be.",
    ),
    _entry(
        "missing_functionality",
        "Users of `{function}` in `{file}` would reasonably expect "
        "it to handle something it currently does not.",
    ),
    _entry(
        "determinism",
        "`{function}` in `{file}` might not give the same outcome for the same inputs every time.",
    ),
    _entry(
        "preconditions",
        "`{function}` in `{file}` assumes things about its inputs or "
        "surroundings without making sure they hold.",
    ),
    _entry(
        "side_effects_and_purity",
        "`{function}` in `{file}` may be changing more of the world than its callers expect.",
    ),
    _entry(
        "abstraction",
        "The level at which `{function}` in `{file}` works, or what it "
        "exposes, does not feel right.",
    ),
    _entry(
        "duplication",
        "Logic in or around `{function}` in `{file}` looks like it repeats "
        "something found elsewhere.",
    ),
    _entry(
        "initialization_order",
        "What `{function}` in `{file}` relies on may not be ready yet at the moment it runs.",
    ),
    _entry(
        "algorithmic_correctness",
        "The approach `{function}` in `{file}` takes may not "
        "produce correct results in every case.",
    ),
    _entry(
        "output_correctness",
        "What `{function}` in `{file}` returns, prints or writes is sometimes not quite right.",
    ),
    _entry(
        "coupling",
        "`{function}` in `{file}` knows more about other parts of the code than it ought to.",
    ),
    _entry(
        "naming",
        "The names in and around `{function}` in `{file}` do not say clearly "
        "what things are or do.",
    ),
    _entry("readability", "Reading `{function}` in `{file}` takes more effort than it should."),
    _entry("testability", "`{function}` in `{file}` is awkward to exercise in isolation."),
    _entry(
        "backwards_compatibility",
        "Existing callers of `{function}` in `{file}` may be affected by how it behaves now.",
    ),
    _entry(
        "invariants",
        "Some property that should always hold around `{function}` in `{file}` can be broken.",
    ),
    _entry(
        "responsibility_distribution",
        "Work that `{function}` in `{file}` does, or leaves to others, may be in the wrong place.",
    ),
    _entry(
        "parameterization",
        "`{function}` in `{file}` hard-wires things that callers may "
        "need to vary, or asks for things it should not.",
    ),
    _entry(
        "atomicity",
        "If `{function}` in `{file}` stops halfway, things may be left in a half-done state.",
    ),
    _entry(
        "resource_utilization",
        "`{function}` in `{file}` may use more memory, disk, network or CPU than necessary.",
    ),
    _entry(
        "environment_awareness",
        "`{function}` in `{file}` may not respect the environment "
        "it runs in (variables, paths, locale, time zone).",
    ),
    _entry(
        "composability", "`{function}` in `{file}` does not combine well with the code around it."
    ),
    _entry(
        "temporal_behaviour",
        "Something about time, ordering or timing in `{function}` in `{file}` seems off.",
    ),
    _entry(
        "idempotency",
        "Running `{function}` in `{file}` more than once may not be as harmless as callers assume.",
    ),
    _entry(
        "null_safety",
        "`{function}` in `{file}` may not cope with missing values (None, "
        "empty or absent entries).",
    ),
    _entry(
        "memory_and_object_lifecycle",
        "Objects created or held by `{function}` in "
        "`{file}` may live longer, or shorter, than they should.",
    ),
    _entry(
        "io_and_data_flow",
        "The way data is read, written or passed along by `{function}` "
        "in `{file}` looks questionable.",
    ),
    _entry(
        "possible_bug",
        "Someone suspects there is a bug related to `{function}` in "
        "`{file}`, but nobody has pinned it down.",
    ),
)

BY_KEY: dict[str, ChangeType] = {c.key: c for c in TAXONOMY}


def render(
    change_type: ChangeType | str,
    function_name: str,
    file: str,
    language: str = "",
    lines: tuple[int, int] | None = None,
) -> str:
    """The request text for one function; `change_type` is an entry or its key. With the
    `language` (its title: "Go") and `lines`, a last sentence says where the function is, so
    that a polyglot repository's request names its language (the taxonomy stays neutral)."""
    if isinstance(change_type, str):
        if change_type not in BY_KEY:
            raise ValueError(f"unknown change type {change_type!r}; known: {', '.join(BY_KEY)}")
        change_type = BY_KEY[change_type]
    text = change_type.template.format(function=function_name, file=file)
    if language and lines:
        text += (
            f" `{function_name}` is the {language} function at lines {lines[0]}-{lines[1]} "
            f"of `{file}`."
        )
    return text
