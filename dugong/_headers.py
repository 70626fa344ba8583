"""Header containers: `CaseInsensitiveDict` and the response header object."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar, overload

__all__ = ["CaseInsensitiveDict", "ResponseHeaders"]

_D = TypeVar("_D")


class CaseInsensitiveDict(MutableMapping[str, Any]):
    """A mutable mapping whose string keys compare without regard to case.

    Iteration gives each key in the spelling with which it was last set.
    ``==`` compares against any mapping, ignoring the case of keys.

    Args:
        data: initial items: a mapping, or an iterable of ``(key, value)``
            pairs, as for `dict`.
        kwargs: more initial items.

    dugong uses it for request header fields (any mapping passed as
    ``headers=`` is read into one) and for `HTTPResponse.trailers`.
    """

    __slots__ = ("_store",)

    def __init__(
        self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None, **kwargs: Any
    ) -> None:
        # lower-cased key -> (key as last set, value)
        self._store: dict[str, tuple[str, Any]] = {}
        if data is not None:
            self.update(data)
        if kwargs:
            self.update(kwargs)

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key.lower()] = (key, value)

    def __getitem__(self, key: str) -> Any:
        return self._store[key.lower()][1]

    def __delitem__(self, key: str) -> None:
        del self._store[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._store

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def lower_items(self) -> Iterator[tuple[str, Any]]:
        """Iterate over ``(lower-cased key, value)`` pairs."""
        return ((lkey, pair[1]) for lkey, pair in self._store.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        other_ci = other if isinstance(other, CaseInsensitiveDict) else CaseInsensitiveDict(other)
        return dict(self.lower_items()) == dict(other_ci.lower_items())

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> CaseInsensitiveDict:
        """A shallow copy."""
        new = CaseInsensitiveDict()
        new._store = self._store.copy()
        return new

    def __repr__(self) -> str:
        return f"CaseInsensitiveDict({dict(self.items())!r})"


class ResponseHeaders:
    """The header fields of a response, in arrival order.

    Reads like an `email.message.Message`: ``headers[name]`` (any case) is the
    first value of that field or None, `get`, `get_all`, `items`, `keys`,
    `values`, ``in``, iteration (over names) and `len` (number of fields).
    """

    __slots__ = ("_first", "_items")

    def __init__(self, items: list[tuple[str, str]], first: dict[str, str] | None = None) -> None:
        self._items = items
        if first is None:
            first = {}
            for name, value in reversed(items):
                first[name.lower()] = value
        #: lower-cased name -> first value
        self._first = first

    def __getitem__(self, name: str) -> str | None:
        return self._first.get(name.lower())

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _D) -> str | _D: ...
    def get(self, name: str, default: Any = None) -> Any:
        """The first value of field *name*, or *default* if it is absent."""
        return self._first.get(name.lower(), default)

    @overload
    def get_all(self, name: str) -> list[str] | None: ...
    @overload
    def get_all(self, name: str, failobj: _D) -> list[str] | _D: ...
    def get_all(self, name: str, failobj: Any = None) -> Any:
        """All values of field *name* in arrival order, or *failobj* if it is absent."""
        key = name.lower()
        if key not in self._first:
            return failobj
        return [v for n, v in self._items if n.lower() == key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        """Field names in arrival order (repeated fields repeat)."""
        return [name for name, _ in self._items]

    def values(self) -> list[str]:
        """Field values in arrival order."""
        return [value for _, value in self._items]

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs in arrival order."""
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResponseHeaders):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return "".join(f"{name}: {value}\n" for name, value in self._items)

    def __repr__(self) -> str:
        return f"<ResponseHeaders {self._items!r}>"


CaseInsensitiveDict.__module__ = "dugong"
