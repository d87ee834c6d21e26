"""LLM view addon: a mitmproxy content view that shows an LLM flow as a conversation.

In mitmweb (and the mitmproxy console) the view "LLM" renders the request side as the route
(front, backend, model, key id, session) and the conversation in canonical form, and the
response side as the answer with outcome, tokens and timings. It is picked automatically for
LLM flows. A streamed answer is not stored by mitmproxy; once the stream has ended, the flow's
response body is set to the whole answer in the client's protocol, so it can be read too.
"""

from __future__ import annotations

import logging

from mitmproxy import contentviews, ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.contentviews import Metadata

from protocol import conversation_text
from protocol.codec import codec
from protocol.exchange import exchange_of
from protocol.pipeline import encode_whole

logger = logging.getLogger(__name__)


class LLMContentview(contentviews.Contentview):
    @property
    def name(self) -> str:
        return "LLM"

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        flow = metadata.flow
        if not isinstance(flow, http.HTTPFlow):
            raise ValueError("not an HTTP flow")
        ex = exchange_of(flow.metadata)
        if ex is None:
            summary = flow.metadata.get("llm")
            if isinstance(summary, dict):
                return conversation_text.render_summary(summary)
            raise ValueError("not an LLM flow")
        if metadata.http_message is flow.request:
            return conversation_text.render_request(ex)
        return conversation_text.render_response(ex)

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        flow = metadata.flow
        if isinstance(flow, http.HTTPFlow) and "llm" in flow.metadata:
            return 2.0  # above the JSON view for LLM flows
        return -1


class LLMView:
    def __init__(self) -> None:
        self.view = LLMContentview()
        self.keep_answers: bool | None = None

    def load(self, loader: Loader) -> None:
        contentviews.add(self.view)  # registering again (a script reload) replaces it

    def _keeps_flows(self) -> bool:
        """Only where flows are kept (mitmweb, the console, `-w`) is a whole answer worth its
        cost. Decided at the first response: mitmweb runs a script's `running` hook late."""
        if self.keep_answers is None:
            self.keep_answers = ctx.master.addons.get("view") is not None or bool(
                getattr(ctx.options, "save_stream_file", None)
            )
        return self.keep_answers

    def response(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        resp = flow.response
        if ex is None or resp is None or not resp.stream or not self._keeps_flows():
            return
        if ex.answer is None:
            return
        # the stream is over: keep the whole answer, in the client's protocol, for reading
        try:
            encoder = codec(ex.front.protocol).encoder(model=None, include_usage=False)
            resp.stream = False
            resp.set_content(encode_whole(ex.answer, encoder))
        except Exception:
            logger.exception("could not keep the streamed answer for display")
