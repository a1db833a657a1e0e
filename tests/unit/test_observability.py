"""k8s/observability/rules.yml: the recording and alert rules load (promtool), and every
alert the operators rely on is there."""

from __future__ import annotations

import shutil
import subprocess

from trenchcoat.ops.launcher import RULES


def test_the_rules_pass_promtool_and_name_every_alert():
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: `make test` installs Debian's prometheus"
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    text = RULES.read_text()
    for alert in ("TrenchcoatStoreDown", "TrenchcoatVolumeNearlyFull", "TrenchcoatWritableVolumesBelowMinimum",
                  "TrenchcoatRepairFailing", "TrenchcoatCacheHitRatioLow", "TrenchcoatFanoutLagHigh",
                  "TrenchcoatDeadLetters", "TrenchcoatF4BlocksUnhealthy", "TrenchcoatF4RebuildStalled",
                  "TrenchcoatWorkerFailed", "TrenchcoatWorkerTicksFailing", "TrenchcoatDeletesPending",
                  "TrenchcoatFeedFollowUpsPending", "TrenchcoatAuditPassOverdue", "TrenchcoatNeedleUnrecoverable",
                  "TrenchcoatDamagedNeedlesNotRepaired", "TrenchcoatVolumeUnderReplicated",
                  "TrenchcoatUnknownVolumeCopies"):
        assert f"alert: {alert}\n" in text, alert
