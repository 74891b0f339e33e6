"""Shared by the tests that kill a try and retry it at once against the emulator."""

from __future__ import annotations

#: A retry's patience for what a killed try sent but never recorded (the hook's
#: ``reconcile_deadline_seconds``, 60 s by default): these tests retry at once, and the emulator's
#: tasks leave WAITING within milliseconds, so a short one keeps each retry from waiting a minute.
RETRY_PATIENCE = 2.0
