// The authprobe monitoring mixin (https://monitoring.mixins.dev conventions):
//   prometheusAlerts   the alerting rules, in group authprobe, after the recording rules
//   prometheusRules    the recording rules: empty by default, see separateRecordingRules in
//                      config.libsonnet (they are in prometheusAlerts' group, before the alerts)
//   grafanaDashboards  {'authprobe.json': the dashboard}
//   grafanaAlerting    Grafana-managed versions of the paging alerts (file provisioning)
// configured by _config (config.libsonnet). Import it and override what you need:
//   local authprobe = import 'authprobe-mixin/mixin.libsonnet';
//   authprobe { _config+:: { authprobeSelector: 'job="synthetic-logins"' } }
(import 'config.libsonnet') +
(import 'rules/rules.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'alerts/grafana.libsonnet') +
(import 'dashboards/authprobe.libsonnet') +
{
  local cfg = $._config,
  local recording = $.prometheusRules.authprobeRecordingRules,
  local alerts = $.prometheusAlerts.authprobeAlerts,

  prometheusRules+:: {
    groups+: if cfg.separateRecordingRules then [{ name: cfg.ruleGroupName + '.rules', rules: recording }] else [],
  },
  prometheusAlerts+:: {
    groups+: [{
      name: cfg.ruleGroupName,
      rules: (if cfg.separateRecordingRules then [] else recording) + alerts,
    }],
  },
}
