"""Rebuild pydantic models (ADK's ``Event``) from JSON they dumped, without validating again.

``Model.model_validate(data)`` checks every field of every nested model (ADK's ``Event`` with
its content and actions: tens of microseconds each), and ADK's session services rebuild
every event of a session on every turn. A payload sessiondb's ADK service wrote itself with
``model_dump(mode="json")`` of the same library versions needs no checking, only the nested
models, sets and enums its JSON lost: :class:`Builder` rebuilds those from each field's
annotation with ``model_construct``.

It is exact only for what it understands. A model class with a field type it does not know
(bytes, datetimes, unions of models...), a validator that is not known to leave dumped data
alone, or a payload key that is not a field, is validated as usual (that subtree only).
Callers use it only for payloads tagged as written by the same library versions.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

__all__ = ["Builder"]

Convert = Callable[[Any], Any]

#: Validators known to leave dumped data as validation without them would: ADK's ``Event``
#: routes convenience keyword arguments (``message``, ``state``...) that a dump never holds,
#: ``EventActions`` validates its auth configs (the field's type does it here too), and
#: google-genai's models only log type mismatches.
HARMLESS_VALIDATORS = frozenset(
    {"_accept_convenience_kwargs", "_check_field_type_mismatches", "_parse_auth_configs"}
)

_PLAIN = frozenset({str, int, float, bool, type(None)})
_IMMUTABLE = (str, int, float, bool, type(None), tuple, frozenset, enum.Enum)
_setattr = object.__setattr__


class _UnsupportedError(Exception):
    """A type the builder cannot rebuild exactly: validate instead."""


def _identity(value: Any) -> Any:
    return value


def _validate_instead(value: Any) -> Any:
    """The conversion of a field the builder cannot rebuild: never called (see ``_Plan``)."""
    raise _UnsupportedError


class _Plan:
    """How to build one model class: per dumped key, its conversion; the defaults of the rest."""

    __slots__ = ("convert", "defaults", "factories", "post_init", "required")

    def __init__(
        self,
        convert: dict[str, Convert],
        defaults: dict[str, Any],
        factories: dict[str, Any],
        required: frozenset[str],
        post_init: bool,
    ) -> None:
        self.convert = convert
        self.defaults = defaults
        self.factories = factories
        self.required = required
        self.post_init = post_init


class Builder:
    """Rebuilds models of the classes it is asked for; one plan per class, made on first use."""

    def __init__(self) -> None:
        self._plans: dict[type[BaseModel], _Plan | None] = {}

    def build(self, cls: type[BaseModel], data: Any) -> Any:
        """``cls`` from its dumped JSON ``data`` (validated where the builder is not exact)."""
        plan = self._plans[cls] if cls in self._plans else self._plan(cls)
        if plan is None or not isinstance(data, dict):
            return cls.model_validate(data)
        convert = plan.convert
        values: dict[str, Any] = {}
        for key, value in data.items():
            step = convert.get(key)
            if step is None or step is _validate_instead:
                # not a field of this class, or one the builder cannot rebuild
                return cls.model_validate(data)
            values[key] = value if value is None or step is _identity else step(value)
        if not plan.required <= values.keys():  # only validation can say what is missing
            return cls.model_validate(data)
        # every field, in the order of the class (as validation makes them)
        fields = plan.defaults.copy()
        fields.update(values)
        for name, field in plan.factories.items():
            if name not in values:
                fields[name] = field.get_default(call_default_factory=True, validated_data=fields)
        model = cls.__new__(cls)
        _setattr(model, "__dict__", fields)
        _setattr(model, "__pydantic_fields_set__", set(values))
        _setattr(model, "__pydantic_extra__", None)
        _setattr(model, "__pydantic_private__", None)
        if plan.post_init:
            model.model_post_init(None)
        return model

    def _plan(self, cls: type[BaseModel]) -> _Plan | None:
        """The plan of ``cls``, or None: validate it."""
        self._plans[cls] = None  # a model that contains itself is validated
        plan = None
        if _plain_model(cls):
            try:
                plan = self._make_plan(cls)
            except _UnsupportedError:
                plan = None
        self._plans[cls] = plan
        return plan

    def _make_plan(self, cls: type[BaseModel]) -> _Plan:
        validated = {
            name
            for group in (cls.__pydantic_decorators__.field_validators,)
            for key, decorator in group.items()
            if key not in HARMLESS_VALIDATORS
            for name in decorator.info.fields
        }
        convert: dict[str, Convert] = {}
        defaults: dict[str, Any] = {}
        factories: dict[str, Any] = {}
        required: set[str] = set()
        for name, field in cls.model_fields.items():
            if field.alias is not None and field.alias != name and not _by_name(cls):
                raise _UnsupportedError(name)
            try:
                convert[name] = (
                    _validate_instead if name in validated else self._converter(field.annotation)
                )
            except _UnsupportedError:
                convert[name] = _validate_instead  # fine while a dump does not hold it
            if field.default_factory is not None:
                factories[name] = field
                defaults[name] = None
            elif field.is_required():
                required.add(name)
                defaults[name] = None
            elif isinstance(field.default, _IMMUTABLE):
                defaults[name] = field.default
            else:
                factories[name] = field  # a mutable default: copied, as validation does
                defaults[name] = None
        post_init = getattr(cls, "__pydantic_post_init__", None) is not None
        return _Plan(convert, defaults, factories, frozenset(required), post_init)

    def _converter(self, annotation: Any) -> Convert:
        """How to turn a JSON value into a value of type ``annotation``."""
        if annotation is Any or annotation is object or annotation in _PLAIN:
            return _identity
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Union or origin is types.UnionType:
            kinds = [a for a in args if a is not type(None)]
            if len(kinds) == 1:
                return self._converter(kinds[0])
            # several types: exact only if each is JSON as it is (validation picks by value)
            if all(self._converter(k) is _identity for k in kinds):
                return _identity
            raise _UnsupportedError(annotation)
        if origin is typing.Literal:
            if all(type(a) in _PLAIN for a in args):
                return _identity
            raise _UnsupportedError(annotation)
        if origin in (list, set, frozenset) and len(args) == 1:
            item = self._converter(args[0])
            if origin is list:
                return _identity if item is _identity else lambda v: [item(x) for x in v]
            kind = origin
            return lambda v: kind(item(x) for x in v)
        if origin is dict and len(args) == 2 and args[0] is str:
            val = self._converter(args[1])
            return _identity if val is _identity else lambda v: {k: val(x) for k, x in v.items()}
        if origin is None and isinstance(annotation, type):
            if issubclass(annotation, BaseModel):
                model = annotation
                return lambda v: self.build(model, v)
            if issubclass(annotation, enum.Enum):
                return annotation
        raise _UnsupportedError(annotation)  # Annotated (constraints), bytes, datetimes...


def _by_name(cls: type[BaseModel]) -> bool:
    """Whether ``cls`` accepts its fields by name (a dump without aliases holds names)."""
    config = cls.model_config
    return bool(config.get("populate_by_name") or config.get("validate_by_name"))


def _plain_model(cls: type[BaseModel]) -> bool:
    """Whether building ``cls`` by hand equals validating it: no model validators but
    harmless ones, no extra fields kept, no private attributes, no root model."""
    if cls.model_config.get("extra") == "allow" or getattr(cls, "__pydantic_root_model__", False):
        return False
    if cls.__private_attributes__:
        return False
    decorators = cls.__pydantic_decorators__
    for group in (decorators.model_validators, decorators.root_validators,
                  decorators.validators):  # fmt: skip
        if any(name not in HARMLESS_VALIDATORS for name in group):
            return False
    return True
