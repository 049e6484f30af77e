// Grafana-managed alert rules equivalent to the paging alerts of prometheusAlerts, for teams that
// alert in Grafana rather than in Alertmanager; with an example contact point and notification
// policy. Rendered as Grafana's alerting file provisioning (apiVersion 1). The burn-rate rule needs
// the recording rules of prometheusRules loaded into Prometheus.
//
// Each rule queries the value (A), takes its last point (B) and compares it with the threshold
// (C), so the query returns data for healthy targets too.
local util = import '../lib/util.libsonnet';

{
  local cfg = $._config,
  local runbook(alert) = cfg.runbookURLPattern % std.asciiLower(alert),
  local budget = util.num(1 - cfg.loginSLO),

  local rule(uid, title, expr, evaluator, threshold, forDuration, noData, summary, description) = {
    uid: uid,
    title: title,
    condition: 'C',
    data: [
      {
        refId: 'A',
        relativeTimeRange: { from: 600, to: 0 },
        datasourceUid: cfg.grafanaDatasourceUid,
        model: { refId: 'A', instant: true, expr: expr },
      },
      {
        refId: 'B',
        datasourceUid: '__expr__',
        model: { refId: 'B', type: 'reduce', expression: 'A', reducer: 'last', settings: { mode: 'dropNN' } },
      },
      {
        refId: 'C',
        datasourceUid: '__expr__',
        model: {
          refId: 'C',
          type: 'threshold',
          expression: 'B',
          conditions: [{ evaluator: { type: evaluator, params: [threshold] } }],
        },
      },
    ],
    'for': forDuration,
    noDataState: noData,
    execErrState: 'Error',
    labels: { severity: cfg.severities.page },
    annotations: { summary: summary, description: description, runbook_url: runbook(title) },
  },

  grafanaAlerting+:: {
    apiVersion: 1,
    groups: [
      {
        orgId: 1,
        name: 'authprobe-paging',
        folder: cfg.grafanaAlertFolder,
        interval: cfg.grafanaAlertInterval,
        rules: [
          rule(
            'authprobe-target-down',
            'AuthprobeTargetDown',
            // The share of failing probes, 0 for healthy targets (so the query has data).
            |||
              (
                count by (target) (
                  authprobe_probe_success == 0
                    unless on (probe, target) authprobe_probe_outcome{result=~"password_expired|pin_not_initialized"}
                    unless on (probe, target) authprobe_probe_outcome{reason=~"account_locked|account_disabled|account_expired|logon_restricted"}
                )
                or count by (target) (authprobe_probe_success) * 0
              ) / count by (target) (authprobe_probe_success)
            |||,
            'gt',
            cfg.targetDownRatio,
            cfg.alertFor.AuthprobeTargetDown,
            'OK',
            'Logins to {{ $labels.target }} are failing for most probes',
            '{{ $values.B.Value | humanizePercentage }} of the probes of target {{ $labels.target }} fail their logins.',
          ),
          rule(
            'authprobe-burn-rate-fast',
            'AuthprobeLoginAvailabilityBurnRate',
            // The burn rate as a multiple of the paging rate of either window pair (the lower of
            // its two windows), above 1 when the Prometheus alert's fast-burn condition holds.
            |||
              max by (target) (
                label_replace(
                  (target:authprobe_login_errors:ratio_rate1h / (14.4 * %(budget)s)) < (target:authprobe_login_errors:ratio_rate5m / (14.4 * %(budget)s))
                    or (target:authprobe_login_errors:ratio_rate5m / (14.4 * %(budget)s)),
                  "windows", "rate1h+rate5m", "", "")
                or
                label_replace(
                  (target:authprobe_login_errors:ratio_rate6h / (6 * %(budget)s)) < (target:authprobe_login_errors:ratio_rate30m / (6 * %(budget)s))
                    or (target:authprobe_login_errors:ratio_rate30m / (6 * %(budget)s)),
                  "windows", "rate6h+rate30m", "", "")
              )
            ||| % { budget: budget },
            'gt',
            1,
            cfg.alertFor.AuthprobeLoginAvailabilityBurnRateFast,
            'OK',
            'Target {{ $labels.target }} burns its login error budget fast',
            'Failed logins on {{ $labels.target }} burn the 30-day ' + util.num(100 * cfg.loginSLO) + ' % budget at {{ $values.B.Value }} times the paging rate.',
          ),
          rule(
            'authprobe-exporter-down',
            'AuthprobeExporterDown',
            'min(up{%s})' % cfg.authprobeSelector,
            'lt',
            1,
            cfg.alertFor.AuthprobeExporterDown,
            'Alerting',
            'authprobe is down: the login path is not monitored',
            'Prometheus cannot scrape authprobe; nobody would notice a login outage.',
          ),
        ],
      },
    ],
    contactPoints: [
      {
        orgId: 1,
        name: 'authprobe-pager',
        receivers: [
          {
            uid: 'authprobe-pager-webhook',
            type: 'webhook',
            settings: { url: cfg.grafanaContactPointURL },
            disableResolveMessage: false,
          },
        ],
      },
    ],
    policies: [
      {
        orgId: 1,
        receiver: 'authprobe-pager',
        group_by: ['alertname', 'target'],
        routes: [
          {
            receiver: 'authprobe-pager',
            object_matchers: [['severity', '=', cfg.severities.page]],
            group_wait: '10s',
            repeat_interval: '1h',
          },
        ],
      },
    ],
  },
}
