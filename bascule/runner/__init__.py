"""The runner: carries out a plan against a target on a monotonic clock — warm-up, steady-state
hypothesis, faults applied and reverted at their instants, load and probes throughout, guardrails,
rollback on every exit path — and writes the run's journal (JSONL). It decides the next action from
the plan and the clock, then acts, like tenacity's engine."""
