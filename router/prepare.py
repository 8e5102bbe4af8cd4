"""Preparing a message: render it per provider, check limits, validate its mobiles.

Everything here is the message's own business: what is refused raises a ``MessageError``
subclass before any provider (or breaker) sees the message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from policies.parts import LIMITS, count_parts, utf16_units
from providers.base import Provider, Rendered, RenderRequest, render_content
from providers.frozen import fast_init
from router.config import RouterSettings
from router.errors import EmptyContentError, MissingParamError, NoRouteError, UnknownTemplateError
from router.model import Message
from router.recipients import Recipients, prepare_recipients


@fast_init
@dataclass(frozen=True, slots=True)
class Prepared:
    """A message ready to route."""

    scene: str
    recipients: Recipients
    renders: Mapping[str, Rendered]  # provider name -> rendering, only those that can


def prepare(
    message: Message,
    settings: RouterSettings,
    providers: Mapping[str, Provider],
    *,
    require_route: bool = True,
) -> Prepared:
    """Render ``message`` for every provider that can carry it, check its limits, and
    validate and de-duplicate its mobiles. Raises MessageError subclasses saying what to fix."""
    request, scene = render_request(message, settings)
    renders: dict[str, Rendered] = {}
    missing: MissingParamError | None = None
    for name, provider in providers.items():
        try:
            rendered = provider.render(request)
        except MissingParamError as exc:
            missing = exc
            continue
        if rendered is not None:
            renders[name] = rendered
    if not renders and missing is not None:
        raise missing
    if not renders and require_route:
        raise NoRouteError(
            f"no configured provider can render scene {scene!r}: add the scene's options "
            "for a provider (e.g. a Ronglian template_id) or send content to a content "
            "provider"
        )
    settings.limits.check_rendered(scene, renders)
    recipients = prepare_recipients(
        tuple(message.mobiles),  # already a tuple (Message reads it once): no copy
        settings.default_region,
        strict=settings.invalid_mobiles == "raise",
    )
    return Prepared(scene, recipients, renders)


def render_request(message: Message, settings: RouterSettings) -> tuple[RenderRequest, str]:
    """The render request of ``message``: free content, or its scene with params."""
    # Blank text is the message's fault: refused here, before any provider (or breaker)
    # sees it, instead of being sent as a bare signature or refused as a provider fault.
    if message.scene is None:
        if not (message.content or "").strip():
            raise EmptyContentError(
                "Message.content is empty or only whitespace; give the SMS text"
            )
        return RenderRequest(None, {}, message.content), "content"
    spec = settings.templates.get(message.scene)
    if spec is None:
        raise UnknownTemplateError(message.scene, list(settings.templates))
    params = {**spec.defaults, **{k: str(v) for k, v in message.params.items()}}
    settings.limits.check_params(message.scene, params)
    for text in spec.content_texts():
        try:
            blank = not render_content(text, params).strip()
        except KeyError:
            continue  # the adapter raises MissingParamError naming it
        if blank:
            raise EmptyContentError(
                f"scene {message.scene!r} renders to blank text with these params; "
                "give non-empty values for its placeholders"
            )
    return RenderRequest(spec.to_template(message.scene), params, None), message.scene


# A text of at most this many UTF-16 units is one part on every route (mainland and UCS-2 take
# 70; GSM-7 takes 160 units, and 70 characters are at most 140 of them).
SINGLE_PART = LIMITS["mainland"][0]


def parts(renders: Iterable[Rendered]) -> tuple[int, int]:
    """SMS parts per recipient (mainland, international): the longest rendering decides.
    A template-only rendering (Ronglian) is counted as one part per template value set."""
    texts = [r.content for r in renders if r.content]
    if not texts:
        return 1, 1
    if all(utf16_units(t) <= SINGLE_PART for t in texts):
        return 1, 1  # most sends: one part both ways (GSM-7 takes 160 units, UCS-2 70)
    mainland = max(count_parts(t, mainland=True) for t in texts)
    international = max(count_parts(t, mainland=False) for t in texts)
    return max(1, mainland), max(1, international)
