"""Admission control: who may send a request now, and which replica gets it when.

Small modules, each with one job; all but `scraper` are pure and take the time from the
caller, so tests drive them with an injected clock:

- `buckets`: token buckets per key (requests, tokens) and the global request limit
- `fair_queue`: weighted fair queuing across keys by priority, FIFO within a key
- `dispatcher`: per-replica concurrency caps and the bounded, timed queue in front of them
- `gate`: throughput-gated dispatch from the engines' decode rate; `scraper` feeds it
- `rate`: a decaying event rate, for honest Retry-After figures
- `metrics`: the admission metrics
"""

from llmservice.router.admission.buckets import RateLimited, RateLimiter, TokenBucket, go_duration
from llmservice.router.admission.dispatcher import Dispatcher
from llmservice.router.admission.fair_queue import FairQueue
from llmservice.router.admission.gate import EngineSample, ThroughputGate, parse_engine_metrics
from llmservice.router.admission.metrics import AdmissionMetrics
from llmservice.router.admission.rate import DecayingRate
from llmservice.router.admission.scraper import GateScraper

__all__ = [
    "AdmissionMetrics",
    "DecayingRate",
    "Dispatcher",
    "EngineSample",
    "FairQueue",
    "GateScraper",
    "RateLimited",
    "RateLimiter",
    "ThroughputGate",
    "TokenBucket",
    "go_duration",
    "parse_engine_metrics",
]
