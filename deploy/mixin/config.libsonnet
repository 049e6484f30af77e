// The settings of the authprobe mixin. Override any of them from your own jsonnet:
//   (import 'authprobe-mixin/mixin.libsonnet') + { _config+:: { loginSlowSeconds: 3 } }
// The defaults render exactly the files checked in under deploy/ (deploy/mixin/generate.sh).
{
  _config+:: {
    // Selects authprobe's own scrape targets: AuthprobeExporterDown watches up{...} with it, and
    // the Grafana-managed exporter-down rule too. The probe metrics carry target/probe labels of
    // their own and are not filtered by it.
    authprobeSelector: 'job="authprobe"',

    // The Prometheus rule group. By default the recording rules and the alerts share it, the
    // recording rules first: rules of one group run in order at one evaluation time, so the alerts
    // read the series recorded in the same evaluation (the promtool unit tests rely on it), and
    // prometheusRules is empty. separateRecordingRules: true puts the recording rules in a group
    // of their own (ruleGroupName + '.rules', in prometheusRules), as most mixins do; the alerts
    // that read them then see the previous evaluation's values.
    ruleGroupName: 'authprobe',
    separateRecordingRules: false,

    // Each alert's runbook_url: this pattern with %s replaced by the lower-cased alert name,
    // the anchors of docs/runbook.md. Point it at where you publish the repository, e.g.
    // 'https://git.example.com/authprobe/blob/main/docs/runbook.md#%s'.
    runbookURLPattern: 'docs/runbook.md#%s',

    // The severity labels Alertmanager routes on (deploy/alertmanager/alertmanager.yml).
    severities: {
      page: 'page',  // wake someone: logins are broken for users now
      ticket: 'ticket',  // needs a person this working day
    },

    // The login SLO: the share of counted probe logins per target that succeed (30 days). The
    // burn-rate alerts use the Google SRE workbook's windows and factors against its budget.
    loginSLO: 0.999,
    // Results not counted for the SLO: they point at the probe's own account or configuration,
    // or at authprobe itself (one probe with a stale password would otherwise burn the budget of
    // the whole target and page; a service rejecting good credentials pages through
    // AuthprobeTargetDown instead).
    sloExcludedResults: ['auth_failed', 'password_expired', 'pin_not_initialized', 'app_key_rejected', 'client_rejected', 'internal_error'],

    // Thresholds.
    loginSlowSeconds: 2,  // AuthprobeLoginSlow: p95 login duration above this
    targetDownRatio: 0.5,  // AuthprobeTargetDown: share of a target's probes failing
    tokenLifetimeDropRatio: 0.5,  // AuthprobeTokenLifetimeDropped: below this share of the day's longest
    probeStaleIntervals: 3,  // AuthprobeProbeStale: intervals (plus backoff) without a finished run
    tlsCertExpiryDays: 14,  // AuthprobeTLSCertExpiringSoon
    passwordExpiryDays: 14,  // AuthprobePasswordExpiringSoon
    storageWriteStaleSeconds: 300,  // AuthprobeStateNotSaved: no successful write for this long

    // How long each condition must hold before the alert fires (`for:`). The burn-rate alert
    // has two rules: the fast burn (page) and the slow burn (ticket).
    alertFor: {
      AuthprobeLoginFailing: '5m',
      AuthprobeTargetDown: '3m',
      AuthprobeLoginSlow: '10m',
      AuthprobeLoginAvailabilityBurnRateFast: '2m',
      AuthprobeLoginAvailabilityBurnRateSlow: '15m',
      AuthprobeRateLimited: '10m',
      AuthprobeCredentialsNeedAttention: '15m',
      AuthprobeAppKeyRejected: '5m',
      AuthprobeClientRejected: '5m',
      AuthprobeTokenLifetimeDropped: '15m',
      AuthprobeDiscoveryFailing: '10m',
      AuthprobeDirectoryBindRefused: '5m',
      AuthprobeAccountLocked: '5m',
      AuthprobePasswordExpiringSoon: '15m',
      AuthprobeGraceLoginsInUse: '1m',
      AuthprobeProbeStale: '2m',
      AuthprobeTLSCertExpiringSoon: '10m',
      AuthprobeConfigReloadFailed: '5m',
      AuthprobeStateNotSaved: '10m',
      AuthprobeExporterDown: '3m',
    },

    // The dashboard.
    dashboardUid: 'authprobe-logins',
    dashboardTitle: 'authprobe: logins (ETNA Trader, OAuth 2.0 and LDAP)',
    dashboardTags: ['authprobe', 'synthetic', 'login'],
    dashboardFile: 'authprobe.json',  // its key in grafanaDashboards

    // Grafana-managed alert rules (grafanaAlerting): the paging alerts for teams that alert in
    // Grafana rather than in Alertmanager, with an example contact point.
    grafanaDatasourceUid: 'prometheus',
    grafanaAlertFolder: 'authprobe',
    grafanaAlertInterval: '1m',
    grafanaContactPointURL: 'http://alert-relay.example:8080/pager',
  },
}
