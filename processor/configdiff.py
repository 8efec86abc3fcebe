"""How two configurations differ: the keys (all, or those that change the physics) and a
one-line description, for the resume, reuse and merge checks of the runner."""

from __future__ import annotations

from processor.config import PHYSICS_KEYS, STACK_KEYS, Config, _under, flatten


def config_diff(
    a: Config,
    b: Config,
    *,
    only: tuple[str, ...] | None = None,
    ignore: tuple[str, ...] = (),
) -> list[str]:
    """Dotted keys whose values differ between two configs (``only`` / ``ignore``: key prefixes)."""
    fa, fb = flatten(a.model_dump(mode="json")), flatten(b.model_dump(mode="json"))
    keys = sorted(set(fa) | set(fb))
    return [
        k
        for k in keys
        if fa.get(k) != fb.get(k) and (only is None or _under(k, only)) and not _under(k, ignore)
    ]


def physics_diff(a: Config, b: Config) -> list[str]:
    """Keys that make chunks of ``a`` and ``b`` differ: :data:`PHYSICS_KEYS`, plus
    :data:`STACK_KEYS` when they change whether MC is kept by process."""
    diff = config_diff(a, b, only=PHYSICS_KEYS)
    wants = (
        a.histogram_creation_task_config.stacks_wanted(),
        b.histogram_creation_task_config.stacks_wanted(),
    )
    if wants[0] != wants[1]:
        diff += config_diff(a, b, only=STACK_KEYS)
    return diff


def describe_diff(a: Config, b: Config, keys: list[str], names: tuple[str, str]) -> str:
    """``key (A: x, B: y)`` for the first few differing keys, on one line."""
    fa, fb = flatten(a.model_dump(mode="json")), flatten(b.model_dump(mode="json"))
    parts = [f"{k} ({names[0]}: {fa.get(k)!r}, {names[1]}: {fb.get(k)!r})" for k in keys[:5]]
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return ", ".join(parts) + more
