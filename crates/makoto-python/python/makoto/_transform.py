"""Pipelines in Python: ``with makoto.transform(...)`` pins and verifies the inputs, lets any
writer write the output, and attests the output's new commits with those inputs."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from makoto import _native
from makoto._reports import AttestReport

F = TypeVar("F", bound=Callable[..., Any])


class NothingAttested(UserWarning):
    """A transform block raised, so its output commits were not attested with its inputs."""


class Transform:
    """A transform in progress; see :func:`makoto.transform`."""

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, str | os.PathLike[str]],
        output: str | os.PathLike[str],
        warehouse: str | os.PathLike[str],
        key: str | os.PathLike[str],
        trust: str | os.PathLike[str] | None = None,
        description: str | None = None,
        log_only: bool = False,
        allow_unattested: bool = False,
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self._inputs = {str(k): os.fspath(v) for k, v in inputs.items()}
        self._output = os.fspath(output)
        self._warehouse = os.fspath(warehouse)
        self._key = os.fspath(key)
        self._trust = None if trust is None else os.fspath(trust)
        self._description = description
        self._log_only = log_only
        self._allow_unattested = allow_unattested
        self._storage_options = None if storage_options is None else dict(storage_options)
        self._pending: Any = None
        self._pinned: dict[str, dict[str, Any]] = {}
        #: The attest report of the output's commits, after a clean exit.
        self.report: AttestReport | None = None

    def __enter__(self) -> Transform:
        self._pending = _native.begin_transform(
            self.name,
            inputs=self._inputs,
            output=self._output,
            warehouse=self._warehouse,
            key=self._key,
            trust=self._trust,
            description=self._description,
            log_only=self._log_only,
            allow_unattested=self._allow_unattested,
            storage_options=self._storage_options,
        )
        self._pinned = {i["name"]: i for i in self._pending.inputs()}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            before, now = self._pending.output_before, self._safe_output_now()
            written = (
                f"; the output has unattested commits {(before + 1) if before is not None else 0}..{now}"
                " from the block (a plain `makoto attest` would record them without inputs)"
                if now is not None and (before is None or now > before)
                else ""
            )
            warnings.warn(
                f"makoto.transform {self.name!r}: the block raised {exc_type.__name__}; "
                f"nothing was attested{written}",
                NothingAttested,
                stacklevel=2,
            )
            return
        self.report = AttestReport._from(self._pending.commit())

    def _safe_output_now(self) -> int | None:
        try:
            now: int | None = self._pending.output_now()
            return now
        except _native.MakotoError:
            return None

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        """The pinned inputs by name: tableUri, version, check, level, stateDigest,
        attestationDigest."""
        return dict(self._pinned)

    def version(self, name: str) -> int:
        """The version input ``name`` is pinned at."""
        return int(self._input(name)["version"])

    def uri(self, name: str) -> str:
        """The canonical URI of input ``name``."""
        return str(self._input(name)["tableUri"])

    def table(self, name: str) -> Any:
        """Input ``name`` as a ``deltalake.DeltaTable`` at its pinned version (needs ``deltalake``)."""
        from deltalake import DeltaTable

        i = self._input(name)
        return DeltaTable(
            i["tableUri"], version=i["version"], storage_options=self._storage_options
        )

    def _input(self, name: str) -> dict[str, Any]:
        if self._pending is None:
            raise RuntimeError("use the transform as a context manager: `with makoto.transform(...) as t:`")
        try:
            return self._pinned[name]
        except KeyError:
            raise KeyError(f"no input named {name!r}; inputs: {sorted(self._pinned)}") from None


def transform(
    name: str,
    *,
    inputs: Mapping[str, str | os.PathLike[str]],
    output: str | os.PathLike[str],
    warehouse: str | os.PathLike[str],
    key: str | os.PathLike[str],
    trust: str | os.PathLike[str] | None = None,
    description: str | None = None,
    log_only: bool = False,
    allow_unattested: bool = False,
    storage_options: Mapping[str, str] | None = None,
) -> Transform:
    """A transform written by Python code, as a context manager::

        with makoto.transform("totals", inputs={"orders": uri}, output=out,
                              warehouse=wh, key=k) as t:
            df = t.table("orders").to_pyarrow_table()      # the pinned, verified version
            deltalake.write_deltalake(out, summarize(df))   # any writer
        t.report                                            # the output's attested commits

    On entry every input is pinned at its latest version and verified against ``trust``
    (default: the public half of ``key``), deep unless ``log_only``; an input that is not
    attested or does not verify raises :class:`makoto.UnattestedInput` naming it (unless
    ``allow_unattested``, which the statements record). On a clean exit every commit the block
    made to ``output`` is attested as a ``transform/v1`` statement whose inputs are the pinned
    versions' attestations (what ``makoto transform`` writes, so ``makoto_lineage`` and
    ``check --upstream`` follow it); no new commit raises :class:`makoto.MakotoError`. When the
    block raises, nothing is attested, a :class:`NothingAttested` warning says so, and the
    exception propagates.
    """
    return Transform(
        name,
        inputs=inputs,
        output=output,
        warehouse=warehouse,
        key=key,
        trust=trust,
        description=description,
        log_only=log_only,
        allow_unattested=allow_unattested,
        storage_options=storage_options,
    )


def transform_step(
    name: str | None = None,
    *,
    inputs: Mapping[str, str | os.PathLike[str]],
    output: str | os.PathLike[str],
    warehouse: str | os.PathLike[str],
    key: str | os.PathLike[str],
    trust: str | os.PathLike[str] | None = None,
    log_only: bool = False,
    storage_options: Mapping[str, str] | None = None,
) -> Callable[[F], F]:
    """Decorator form of :func:`transform`: the function runs inside the transform and gets
    the :class:`Transform` as its first argument; its docstring is the description::

        @makoto.transform_step(inputs={"orders": uri}, output=out, warehouse=wh, key=k)
        def totals(t):
            deltalake.write_deltalake(out, summarize(t.table("orders").to_pyarrow_table()))
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with transform(
                name or fn.__name__,
                inputs=inputs,
                output=output,
                warehouse=warehouse,
                key=key,
                trust=trust,
                description=(fn.__doc__ or "").strip() or f"Python function {fn.__qualname__}",
                log_only=log_only,
                storage_options=storage_options,
            ) as t:
                return fn(t, *args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate
