// Recording rules: SLO runs and failures, error ratios and availability per target, uptime and
// reachability across locations, latency quantiles, failures by result.
{
  local cfg = $._config,
  local excluded = std.join('|', cfg.sloExcludedResults),
  local counted = 'authprobe_probe_runs_total{result!~"%s"}' % excluded,
  local failed = 'authprobe_probe_runs_total{result!~"success|%s"}' % excluded,
  local errorRatio(window) = {
    record: 'target:authprobe_login_errors:ratio_rate' + window,
    expr: |||
      sum by (target) (rate(%(failed)s[%(window)s]))
        / sum by (target) (rate(%(counted)s[%(window)s]))
    ||| % { failed: failed, counted: counted, window: window },
  },
  local availability(window) = {
    record: 'target:authprobe_login_availability:ratio_rate' + window,
    expr: '1 - target:authprobe_login_errors:ratio_rate' + window,
  },
  local latency(name, q) = {
    record: 'target:authprobe_login_duration_seconds:' + name,
    expr: 'histogram_quantile(%s, sum by (target, le) (rate(authprobe_probe_login_duration_seconds_bucket[5m])))' % q,
  },

  prometheusRules+:: {
    // The recording rules come first in the one group the alerts share (see mixin.libsonnet).
    authprobeRecordingRules:: [
      // Runs that count for the SLO, and the failed ones among them, per target.
      {
        record: 'target:authprobe_slo_runs:rate5m',
        expr: 'sum by (target) (rate(%s[5m]))' % counted,
      },
      {
        record: 'target:authprobe_slo_failures:rate5m',
        expr: 'sum by (target) (rate(%s[5m]))' % failed,
      },
      // Error ratio of logins per target, over the windows the burn-rate alerts use.
      {
        record: 'target:authprobe_login_errors:ratio_rate5m',
        expr: 'target:authprobe_slo_failures:rate5m / target:authprobe_slo_runs:rate5m',
      },
    ] + [errorRatio(w) for w in ['30m', '1h', '2h', '6h', '1d', '3d']] + [
      // Login availability per target (the share of counted runs that succeeded).
      availability('5m'),
      availability('1h'),
      availability('1d'),
      {
        record: 'target:authprobe_login_availability:ratio_rate30d',
        expr: |||
          sum by (target) (increase(authprobe_probe_runs_total{result="success"}[30d]))
            / sum by (target) (increase(%s[30d]))
        ||| % counted,
      },
      // The same probes run from several locations (--location), with Grafana synthetic
      // monitoring's two definitions: uptime counts a moment as up when at least one location's
      // last run succeeded; reachability is successful runs / all runs, every location counted.
      {
        record: 'probe:authprobe_up:max',
        expr: 'max by (probe, target) (authprobe_probe_success)',
      },
      {
        record: 'probe:authprobe_uptime:ratio_1h',
        expr: 'avg_over_time(probe:authprobe_up:max[1h])',
      },
      {
        record: 'probe:authprobe_reachability:ratio_rate1h',
        expr: |||
          sum by (probe, target) (rate(authprobe_probe_runs_total{result="success"}[1h]))
            / sum by (probe, target) (rate(authprobe_probe_runs_total[1h]))
        |||,
      },
      // Login latency per target (runs in which every request was answered).
      latency('p50_5m', '0.50'),
      latency('p95_5m', '0.95'),
      latency('p99_5m', '0.99'),
      // Failures by result, and failing probes by result and reason (from their last run).
      {
        record: 'target_result:authprobe_probe_failures:rate5m',
        expr: 'sum by (target, result) (rate(authprobe_probe_runs_total{result!="success"}[5m]))',
      },
      {
        record: 'target_result_reason:authprobe_probes_failing:count',
        expr: 'count by (target, result, reason) (authprobe_probe_outcome{result!="success"})',
      },
    ],
  },
}
