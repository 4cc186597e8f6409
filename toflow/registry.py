"""One way to make a component available by name: a :class:`Registry` per kind.

Solvers, objectives, couplings, regularisers, time modes, traces, probes, activations and toy
sets each have one. A registry maps names to components (classes or functions), builds one from
a config section's settings, and refuses, in one line that names the config key, what is not
registered or what the chosen component does not take::

    SOLVERS = Registry("solver.name", settings="solver")

    @SOLVERS.register
    class Dopri5(Solver):
        name = "dopri5"

    SOLVERS.build("dopri5", atol=1e-5, step_size=None)  # None: the component's default
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Callable, Iterator


class Registry:
    """Named components of one kind.

    Args:
        key: The config key that names one, e.g. ``"solver.name"``; it heads every refusal.
        settings: The config section whose other keys are the chosen component's keyword
            arguments (``"solver"`` gives ``solver.atol``), or None where nothing is built from
            settings.
        keyed: The names are themselves config keys under ``key`` (``regularizers.kinetic``).
    """

    def __init__(self, key: str, settings: str | None = None, keyed: bool = False):
        self.key, self.section, self.keyed = key, settings, keyed
        self._items: dict[str, Any] = {}

    def register(self, component: Any = None, *, name: str | None = None) -> Any:
        """Make ``component`` available as ``name`` (default: its ``name`` attribute).

        Usable as a decorator, with or without ``name``. Returns the component, unchanged.
        """
        if component is None:
            return lambda later: self.register(later, name=name)
        self._items[name or component.name] = component
        return component

    def unregister(self, name: str) -> Any:
        """Remove ``name`` and return its component (e.g. one registered for a test)."""
        return self._items.pop(name)

    def __getitem__(self, name: str) -> Any:
        if name not in self._items:
            raise ValueError(self.unknown(name))
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> tuple[str, ...]:
        """The registered names, in the order of registration."""
        return tuple(self._items)

    def items(self):
        return self._items.items()

    def unknown(self, name: str, also: tuple[str, ...] = ()) -> str:
        """The one-line refusal of an unregistered ``name``, with the closest registered one;
        ``also``: names the key takes besides the registered ones (e.g. ``auto``)."""
        names = (*also, *self._items)
        close = difflib.get_close_matches(str(name), names, n=1)
        if self.keyed:
            hint = f" (did you mean '{self.key}.{close[0]}'?)" if close else ""
            return f"{self.key}.{name}: unknown{hint}; one of {', '.join(names)}"
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{self.key}: '{name}' is not one of {', '.join(names)}{hint}"

    def settings(self, name: str) -> tuple[str, ...]:
        """The keyword arguments the component ``name`` takes."""
        return accepted(self[name])

    def build(self, name: str, **settings: Any) -> Any:
        """``component(**settings)`` for the component ``name``.

        A setting given as None takes the component's default; a setting it does not take is
        refused, naming the config key, so that a config never carries a value nobody reads.
        """
        component = self[name]
        given = {key: value for key, value in settings.items() if value is not None}
        takes = accepted(component)
        for key in given:
            if key not in takes:
                where = f"{self.section}.{key}" if self.section else key
                raise ValueError(f"{where}: not used by {name} (it takes {', '.join(takes) or 'nothing'}; "
                                 f"leave {where} null)")
        return component(**given)


def accepted(component: Callable) -> tuple[str, ...]:
    """The keyword arguments a dataclass, class or function takes."""
    if dataclasses.is_dataclass(component):
        return tuple(f.name for f in dataclasses.fields(component) if f.init)
    parameters = inspect.signature(component).parameters.values()
    return tuple(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
