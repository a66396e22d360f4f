"""Widget state that lives in the URL, so that a view can be shared by copying the address bar.

Every widget made here reads its first value from ``st.query_params`` (falling back to the value the user last
chose on another page, then to a default) and writes its current value back after each run. Values that the
URL asks for but the data does not offer are not silently replaced: ``url_select`` returns a notice so the page
can say "experiment 'x' is not in this store; showing 'y'".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

_LAST = "_last_"  # session keys that survive a page switch (widget keys are dropped when the widget is not drawn)


def _as_text(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def _match(wanted: str | None, options: Sequence[Any]) -> Any | None:
    if wanted is None:
        return None
    for opt in options:
        if _as_text(opt) == wanted:
            return opt
    return None


def url_select(label: str, options: Sequence[Any], key: str, *, default: Any = None,
               format_func: Callable[[Any], str] = _as_text, container: Any = None,
               help: str | None = None) -> tuple[Any, str | None]:
    """A selectbox whose value is ``?key=…`` in the URL. Returns (value, notice); notice is set when the URL
    asked for a value that is not among ``options`` (the page shows it instead of failing). ``default`` may be a
    function of no arguments: it is then called only when neither the session, the URL nor the last choice
    decides, so an expensive default (the latest experiment: a load of every run) costs nothing otherwise."""
    box = container or st
    options = list(options)
    notice = None
    if key not in st.session_state or st.session_state[key] not in options:
        wanted = st.query_params.get(key)
        chosen = _match(wanted, options)
        if wanted is not None and chosen is None and key not in st.session_state:
            notice = f"{label} {wanted!r} from the URL is not available here"
        last = st.session_state.get(_LAST + key)
        if chosen is None and last is not None:
            chosen = _match(_as_text(last), options)
        if chosen is None:
            if callable(default):
                default = default()
            chosen = default if default in options else (options[0] if options else None)
        st.session_state[key] = chosen
    value = box.selectbox(label, options, key=key, format_func=format_func, help=help)
    _remember(key, value)
    return value, notice


def url_multiselect(label: str, options: Sequence[Any], key: str, *, default: Sequence[Any] | None = None,
                    container: Any = None, help: str | None = None) -> list[Any]:
    """A multiselect whose values are repeated ``?key=a&key=b`` in the URL (unknown values are dropped)."""
    box = container or st
    options = list(options)
    if key not in st.session_state:
        wanted = st.query_params.get_all(key)
        chosen = [o for o in (_match(w, options) for w in wanted) if o is not None]
        st.session_state[key] = chosen if wanted else [d for d in (default or []) if d in options]
    else:
        st.session_state[key] = [v for v in st.session_state[key] if v in options]
    values = box.multiselect(label, options, key=key, format_func=_as_text, help=help)
    _put(key, [_as_text(v) for v in values])
    return values


def url_text(label: str, key: str, *, container: Any = None, placeholder: str = "") -> str:
    """A text input mirrored to ``?key=…`` (empty text removes the parameter)."""
    box = container or st
    if key not in st.session_state:
        st.session_state[key] = st.query_params.get(key, "")
    value = box.text_input(label, key=key, placeholder=placeholder)
    if value:
        _put(key, value)
    elif key in st.query_params:
        del st.query_params[key]
    return value


def url_number(label: str, key: str, *, default: float, min_value: float | None = None,
               container: Any = None, help: str | None = None) -> float:
    """A number input mirrored to ``?key=…``; a URL value that is not a number falls back to ``default``."""
    box = container or st
    if key not in st.session_state:
        try:
            value = float(st.query_params.get(key, default))
        except ValueError:
            value = float(default)
        if min_value is not None and not value >= min_value:
            value = float(default)
        st.session_state[key] = value
    value = box.number_input(label, key=key, min_value=min_value, help=help, format="%g")
    _remember(key, value)
    return float(value)


def url_select_number(label: str, choices: Sequence[float], key: str, *, default: float,
                      format_func: Callable[[Any], str] = _as_text, container: Any = None,
                      help: str | None = None) -> float:
    """A selectbox over the numbers ``choices`` mirrored to ``?key=…``, where a positive number that the URL or the
    last choice on another page holds joins the options: a shared link with any value shows that value, while the
    widget offers the usual ones. A URL value that is not a positive number falls back to ``default``."""
    extra = []
    for raw in (st.query_params.get(key), st.session_state.get(_LAST + key)):
        try:
            value = float(raw) if raw is not None else math.nan
        except (TypeError, ValueError):
            continue
        if value > 0 and math.isfinite(value):
            extra.append(value)
    options = sorted(set(choices) | set(extra))
    value, _ = url_select(label, options, key, default=default, format_func=format_func, container=container,
                          help=help)
    return float(value)


def url_slider(label: str, options: Sequence[Any], key: str, *, default: Any, container: Any = None) -> Any:
    """A select_slider over discrete ``options`` mirrored to ``?key=…``."""
    box = container or st
    options = list(options)
    if key not in st.session_state or st.session_state[key] not in options:
        chosen = _match(st.query_params.get(key), options)
        st.session_state[key] = chosen if chosen is not None else default
    value = box.select_slider(label, options, key=key, format_func=_as_text)
    _remember(key, value)
    return value


def url_checkbox(label: str, key: str, *, default: bool = False, container: Any = None) -> bool:
    """A checkbox mirrored to ``?key=1`` / ``?key=0``."""
    box = container or st
    if key not in st.session_state:
        raw = st.query_params.get(key)
        st.session_state[key] = default if raw is None else raw in ("1", "true", "True")
    value = box.checkbox(label, key=key)
    _put(key, "1" if value else "0")
    return bool(value)


def set_url(key: str, value: str | None) -> None:
    """Put a non-widget value (e.g. the selected run) into the URL, or remove it."""
    if value is None:
        if key in st.query_params:
            del st.query_params[key]
    else:
        _put(key, value)


def _put(key: str, value: str | list[str]) -> None:
    """Write ``?key=value`` only when it changes: each write sends the browser its own history update, and a
    rerun of the Transfer page touches eight parameters that mostly stay as they are."""
    if st.query_params.get_all(key) != ([value] if isinstance(value, str) else value):
        st.query_params[key] = value


def _remember(key: str, value: Any) -> None:
    if value is None:
        return
    _put(key, _as_text(value))
    st.session_state[_LAST + key] = value
