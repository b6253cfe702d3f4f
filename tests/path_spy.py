"""A spy on which time loop a TND call runs (shared by the fast-path and lesion tests)."""

from __future__ import annotations

import tnd.fast as fast


class PathSpy:
    """Counts which time loop a model call ran: the fused ``tnd.fast.run`` or the reference loop,
    and which backend the fused path chose (so a test knows the path it compares)."""

    def __init__(self, m):
        self.m, self.fast_calls, self.ref_calls, self.backends = m, 0, 0, []

    def __enter__(self):
        self.run, self.choose, ref = fast.run, fast.choose_backend, self.m.run_reference

        def run(*a, **k):
            self.fast_calls += 1
            return self.run(*a, **k)

        def choose(*a, **k):
            b = self.choose(*a, **k)
            self.backends.append(b)
            return b

        def reference(*a, **k):
            self.ref_calls += 1
            return ref(*a, **k)

        fast.run, fast.choose_backend, self.m.run_reference = run, choose, reference
        return self

    def __exit__(self, *exc):
        fast.run, fast.choose_backend = self.run, self.choose
        del self.m.run_reference  # the instance attribute: the class method shows again
