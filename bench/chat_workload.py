"""A seeded multi-turn chat workload: the same conversations for every router under test.

Shape: conversations open under one of a few shared system prompts (some far more popular
than others, as one assistant usually dominates a deployment), run several turns, and wait
a think time between turns. Each turn's request carries the whole conversation so far, so
prompts grow with every turn; the assistant replies are appended by the client as it
receives them (the simulator's answer depends only on the prompt, so they are the same for
every target). Sessions start as a Poisson process.

Everything here is a pure function of the `WorkloadSpec` (and its seed): no clock, no I/O.
Text is made of pseudo-words of at most six letters with a leading space, which the
simulator's tokenizer counts as one token each, so the word counts below are token counts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkloadSpec:
    sessions: int = 300
    seed: int = 7
    # Sessions started per second on average (Poisson arrivals).
    session_rate: float = 5.0
    system_prompts: int = 5
    system_tokens: tuple[int, int] = (300, 900)
    turns: tuple[int, int] = (3, 8)
    user_tokens: tuple[int, int] = (15, 120)
    reply_tokens: tuple[int, int] = (40, 200)
    # Mean think time between a reply and the next turn, seconds (exponential, clipped).
    think_mean: float = 2.0
    think_clip: tuple[float, float] = (0.2, 8.0)


@dataclass(frozen=True)
class Turn:
    user: str
    max_tokens: int
    # Seconds to wait after the previous reply before sending this turn (0 for the first).
    think: float


@dataclass(frozen=True)
class Session:
    session_id: str
    start: float  # seconds after the run starts
    system: int  # index into Workload.system_prompts
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Workload:
    system_prompts: tuple[str, ...]
    sessions: tuple[Session, ...]

    @property
    def requests(self) -> int:
        return sum(len(s.turns) for s in self.sessions)


def _vocabulary(rng: random.Random, size: int = 400) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(2, 6))))
    return [" " + w for w in sorted(words)]


def _text(rng: random.Random, vocabulary: list[str], tokens: int) -> str:
    return "".join(rng.choice(vocabulary) for _ in range(tokens)).lstrip()


def build(spec: WorkloadSpec) -> Workload:
    """The workload `spec` describes; the same spec always gives the same workload."""
    rng = random.Random(spec.seed)
    vocabulary = _vocabulary(rng)
    prompts = tuple(
        f"System {i}:" + " " + _text(rng, vocabulary, rng.randint(*spec.system_tokens))
        for i in range(spec.system_prompts)
    )
    # Popularity falls off as 1/rank: the first prompt opens the most conversations.
    weights = [1.0 / (rank + 1) for rank in range(spec.system_prompts)]
    sessions = []
    start = 0.0
    for index in range(spec.sessions):
        system = rng.choices(range(spec.system_prompts), weights)[0]
        turns = []
        for turn in range(rng.randint(*spec.turns)):
            think = 0.0
            if turn:
                low, high = spec.think_clip
                think = round(min(high, max(low, rng.expovariate(1 / spec.think_mean))), 3)
            user = _text(rng, vocabulary, rng.randint(*spec.user_tokens))
            turns.append(Turn(user, rng.randint(*spec.reply_tokens), think))
        sessions.append(Session(f"chat-{spec.seed}-{index}", round(start, 3), system, tuple(turns)))
        start += rng.expovariate(spec.session_rate)
    return Workload(prompts, tuple(sessions))


def messages(
    workload: Workload, session: Session, turn: int, replies: list[str]
) -> list[dict[str, str]]:
    """The request body's messages for `turn`: the system prompt, then every turn so far."""
    out = [{"role": "system", "content": workload.system_prompts[session.system]}]
    for done, reply in enumerate(replies[:turn]):
        out.append({"role": "user", "content": session.turns[done].user})
        out.append({"role": "assistant", "content": reply})
    out.append({"role": "user", "content": session.turns[turn].user})
    return out
