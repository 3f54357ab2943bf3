"""The teacher: any OpenAI-compatible chat endpoint (vLLM, SGLang, hosted APIs) via the openai SDK.

Retries are done here rather than by the SDK, so that every attempt is counted: HTTP 5xx and 429,
timeouts and connection errors are retried with exponential backoff and jitter, up to
`teacher.max_retries` times; other 4xx fail at once. What is left after the retries is
`TeacherUnavailable`, an outage the stage runner retries and never records as data; only a
refusal of the request's content (400, 413, 422: `MODEL_REFUSALS`) is a plain `TeacherError`,
the rollout's outcome. With several endpoints (`teacher.base_urls`)
each attempt goes to one chosen by the pool (trajlake.teacher.pool): a failed attempt is retried
at once on an endpoint that has not failed this call, and with backoff only when none is left.
Every call, whatever its purpose, is recorded in the `UsageMeter` (per purpose and per
endpoint), and the shared `Budget` is checked before a request is sent.

The API key is read from the environment variable named by `teacher.api_key_env` at each call and
handed to a client that lives only for that call; no Teacher attribute holds it.

`teacher.tool_call_parse` (see trajlake.teacher.reply) changes what replies turn into, so it is
part of the teacher id, except at its default, `auto`, which keeps every id made before the
setting existed, when the behaviour was `native`. Those ids keep their meaning: `auto` is
`native` on every reply with native tool_calls and differs only where the calls came in the
content, which `native` answered with a format error, so a server writing its calls there gave
rollouts that never ran a command. `native` or `content`, chosen explicitly, gives a new id.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import re
import time
from typing import Any

import openai

from trajlake.config import TeacherConfig
from trajlake.errors import TeacherError, TeacherUnavailable
from trajlake.teacher.accounting import Budget, UsageMeter, estimate_tokens
from trajlake.teacher.content_calls import calls_context
from trajlake.teacher.pool import EndpointPool
from trajlake.teacher.reply import TeacherReply, parse_completion

#: HTTP statuses that refuse the request for its content (the conversation is too long for the
#: model's context, say): the rollout's own outcome, recorded as data. Every other failure is the
#: server's or the configuration's (TeacherUnavailable), and the record is retried later.
MODEL_REFUSALS = frozenset({400, 413, 422})


class _Retryable(Exception):
    """An attempt failed in a way worth trying again (internal to this module)."""

    def __init__(self, reason: str, hint: str):
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def teacher_id(config: TeacherConfig, scaffold_id: str) -> str:
    """A short, stable id of what generates the data: `<model-slug>-<12 hex>`.

    It changes with the model, endpoint kind, sampling parameters, prompt version, scaffold and
    tool-call parsing (see the module docstring), and not with the servers' addresses
    (base_url, base_urls, pool settings) or the API key.
    """
    identity = {
        "model": config.model,
        "endpoint_kind": config.endpoint_kind,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_tokens": config.max_tokens,
        "prompt_version": config.prompt_version,
        "scaffold": scaffold_id,
    }
    if config.tool_call_parse != "auto":  # the default leaves older ids as they were
        identity["tool_call_parse"] = config.tool_call_parse
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    name = config.model.rstrip("/").rsplit("/", 1)[-1].lower()
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:32] or "teacher"
    return f"{slug}-{digest}"


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (0-based): base·2^attempt, capped,
    then scaled by a random factor in [0.5, 1] so that concurrent clients do not retry in step."""
    return min(cap_s, base_s * 2**attempt) * rng.uniform(0.5, 1.0)


class Teacher:
    """A thread-safe chat client; share one per process (and its meter and budget).

    `scaffold_id` names the agent scaffold (prompts, tools) the teacher is used with; together
    with the config it makes `teacher_id`, the lineage key of everything this teacher generates.
    `backoff_base_s` is the first retry's delay (tests make it tiny).
    """

    def __init__(
        self,
        config: TeacherConfig,
        scaffold_id: str = "",
        usage: UsageMeter | None = None,
        budget: Budget | None = None,
        *,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 10.0,
    ) -> None:
        if not isinstance(scaffold_id, str):
            raise TypeError(
                f"Teacher's second argument is the scaffold id (a str), got {type(scaffold_id)}: "
                "pass usage= and budget= by keyword"
            )
        self.config = config
        self.scaffold_id = scaffold_id
        self.teacher_id = teacher_id(config, scaffold_id)
        self.usage = usage if usage is not None else UsageMeter()
        self.budget = budget if budget is not None else Budget(config.budget_tokens)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.pool = EndpointPool(
            config.endpoints(), config.pool_strategy, config.down_after, config.down_for_s
        )
        self._rng = random.Random()
        self._http = openai.DefaultHttpxClient()  # one connection pool for all threads

    def __repr__(self) -> str:
        c = self.config
        return f"Teacher({self.teacher_id!r}, model={c.model!r}, base_url={c.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        purpose: str = "agent",
    ) -> TeacherReply:
        """Ask the teacher for the next assistant turn.

        Raises BudgetExceeded (nothing sent) when the call could overrun the budget,
        TeacherError when the request's content is refused, else TeacherUnavailable.
        """
        limit = max_tokens or self.config.max_tokens
        request: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
            "max_tokens": limit,
        }
        if tools:
            request["tools"] = tools
        estimate = estimate_tokens(messages) + (estimate_tokens(tools) if tools else 0)
        self.budget.reserve(estimate + limit)
        used = 0
        start = time.monotonic()
        try:
            data, url = self._send(request, purpose)
            reply = self._reply(data, estimate, start, url, calls_context(messages, tools))
            used = reply.prompt_tokens + reply.completion_tokens
        except TeacherError:
            self.usage.record_failure(purpose)
            raise
        finally:
            self.budget.settle(estimate + limit, used)
        self.usage.record_call(
            purpose, reply.prompt_tokens, reply.completion_tokens, reply.cost_usd, url
        )
        return reply

    def _send(self, request: dict[str, Any], purpose: str) -> tuple[Any, str]:
        """The completion's JSON and the endpoint that answered, after retries if needed."""
        attempts = self.config.max_retries + 1
        failed: set[str] = set()  # endpoints that failed this call since the last backoff
        rounds = 0
        for attempt in range(attempts):
            url = self.pool.acquire(avoid=failed)
            ok = True
            try:
                return self._post(request, url), url
            except _Retryable as e:
                failure, ok = e, False
                failed.add(url)
                self.usage.record_endpoint_failure(url)
            finally:
                self.pool.release(url, ok)  # a 4xx is the request's fault, not the endpoint's
            if attempt + 1 < attempts:
                self.usage.record_retry(purpose)
                if not self.pool.others_up(failed):  # nowhere else to go at once: back off
                    time.sleep(
                        backoff_delay(rounds, self.backoff_base_s, self.backoff_cap_s, self._rng)
                    )
                    rounds += 1
                    failed.clear()
        raise TeacherUnavailable(
            f"the teacher at {self._where()} failed {attempts} time(s) "
            f"({self.config.max_retries} retries): {failure.reason}; {failure.hint}"
        )

    def _where(self) -> str:
        urls = self.pool.urls
        return urls[0] if len(urls) == 1 else f"{len(urls)} endpoints ({', '.join(urls)})"

    def _post(self, request: dict[str, Any], url: str) -> Any:
        client = openai.OpenAI(
            base_url=url,
            api_key=os.environ.get(self.config.api_key_env) or "EMPTY",
            timeout=self.config.timeout_s,
            max_retries=0,
            http_client=self._http,
        )
        try:
            response = client.chat.completions.with_raw_response.create(**request)
        except openai.APITimeoutError:
            raise _Retryable(
                f"timeout: no answer within teacher.timeout_s={self.config.timeout_s} s",
                "check that the server is not overloaded, or raise teacher.timeout_s",
            ) from None
        except openai.APIConnectionError as e:
            raise _Retryable(
                f"connection error: cannot reach {url} ({e.__cause__ or e})",
                "check that the server is running and that teacher.base_url is right",
            ) from None
        except openai.APIStatusError as e:
            self._raise_status(e, url)
        try:
            return json.loads(response.text)
        except json.JSONDecodeError:
            raise TeacherUnavailable(
                f"the teacher at {url} answered with something that is not "
                f"JSON: {response.text[:200]!r}; check that teacher.base_url is the /v1 root of "
                "an OpenAI-compatible server"
            ) from None

    def _raise_status(self, error: openai.APIStatusError, url: str) -> None:
        status = error.status_code
        body = error.body
        text = body.get("message") if isinstance(body, dict) else None
        detail = f"HTTP {status}: {str(text or body or error.message)[:300]}"
        if status == 429:
            raise _Retryable(detail, "the server is rate-limiting: lower the concurrency") from None
        if status >= 500:
            raise _Retryable(detail, "check the teacher server's log") from None
        hints = {
            401: f"check the API key in the environment variable {self.config.api_key_env}",
            403: f"check the API key in the environment variable {self.config.api_key_env}",
            404: "check teacher.base_url (the /v1 root) and teacher.model",
        }
        hint = hints.get(status, "check teacher.model, teacher.max_tokens and the messages sent")
        refused = TeacherError if status in MODEL_REFUSALS else TeacherUnavailable
        raise refused(f"the teacher at {url} rejected the request ({detail}); {hint}") from None

    def _reply(
        self,
        data: Any,
        prompt_estimate: int,
        start: float,
        url: str,
        offered: tuple[list[str], str],
    ) -> TeacherReply:
        tool_names, id_seed = offered  # see content_calls.calls_context
        parse = self.config.tool_call_parse
        try:
            message, finish_reason, usage, format_error = parse_completion(
                data, parse, tool_names, id_seed
            )
        except ValueError as e:
            raise TeacherUnavailable(
                f"the teacher at {url} did not answer with a chat completion "
                f"({e}); check that it is an OpenAI-compatible server"
            ) from None
        if usage is None:  # some servers omit usage: estimate it rather than count nothing
            shown = [message["content"], message["reasoning_content"], message["tool_calls"]]
            usage = {"prompt_tokens": prompt_estimate, "completion_tokens": estimate_tokens(shown)}
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
        prices = (self.config.usd_per_mtok_in, self.config.usd_per_mtok_out)
        cost = (prompt * prices[0] + completion * prices[1]) / 1e6
        return TeacherReply(
            message=message,
            finish_reason=finish_reason,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            latency_s=time.monotonic() - start,
            format_error=format_error,
            usage_estimated=data.get("usage") is None,
        )


@functools.cache
def shared_teacher(config: TeacherConfig, scaffold_id: str = "") -> Teacher:
    """The one `Teacher` per teacher config in this process, so that every stage running here
    (rollouts, self-evaluation, PR writing) counts into one usage meter and one token budget."""
    return Teacher(config, scaffold_id, usage=UsageMeter())


def teacher_for(spec: str, default: TeacherConfig, scaffold_id: str) -> Teacher:
    """The teacher of a record's generation: the one its replay named (`teacher_spec`, JSON),
    else the configured one; shared per process like `shared_teacher`."""
    config = TeacherConfig.model_validate_json(spec) if spec else default
    return shared_teacher(config, scaffold_id)
