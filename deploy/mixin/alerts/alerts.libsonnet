// The alerts: logins failing, slow or burning the SLO's error budget, problems of the probe
// accounts, OAuth 2.0 clients and directories, certificates, and authprobe itself. Severity
// `page` wakes someone (logins are broken for users now); `ticket` needs a person this working day.
//
// Login SLO: 99.9 % of probe logins per target succeed. Runs whose result points at the probe's own
// account or configuration (auth_failed, password_expired, pin_not_initialized, app_key_rejected,
// client_rejected) or at authprobe itself (internal_error) are not counted: one probe with a stale password would
// otherwise burn the budget of the whole target and page. A login service that rejects valid
// credentials fails most probes at once and pages through AuthprobeTargetDown instead; each such
// probe also raises its own alert (AuthprobeLoginFailing, ...).
//
// LDAP probes have no label of their own: their outcome carries ldap_result_code where the others
// carry http_status, so `authprobe_probe_outcome{ldap_result_code!=""}` selects them. A directory
// that refuses a probe's bind (a wrong password, a locked, disabled or expired account) raises
// AuthprobeDirectoryBindRefused or AuthprobeAccountLocked, not AuthprobeLoginFailing; a directory
// that is down or broken (connect_error, timeout, tls_error, unavailable, ...) raises
// AuthprobeLoginFailing and, for most probes of a target, AuthprobeTargetDown, as for every family.
// After a refused wrong password, unknown user or locked account, authprobe's lockout guard holds the
// credentials back for max_backoff (1 h by default) and every run meanwhile reports the refused
// result (authprobe_probe_backoff_seconds > 0): those alerts last for the hold.
local util = import '../lib/util.libsonnet';

{
  local cfg = $._config,
  local runbook(alert) = cfg.runbookURLPattern % std.asciiLower(alert),
  local budget = util.num(1 - cfg.loginSLO),
  local sloPercent = util.num(100 * cfg.loginSLO),

  prometheusAlerts+:: {
    authprobeAlerts:: [
      // Failing on every run for 5 minutes; credential, app-key and client problems have their own
      // alerts, and so has a directory refusing an LDAP probe's bind (AuthprobeDirectoryBindRefused,
      // AuthprobeAccountLocked).
      {
        alert: 'AuthprobeLoginFailing',
        expr: |||
          authprobe_probe_success == 0
            unless on (probe, target) authprobe_probe_outcome{result=~"password_expired|pin_not_initialized|app_key_rejected|client_rejected|rate_limited"}
            unless on (probe, target) authprobe_probe_outcome{result="auth_failed", ldap_result_code!=""}
        |||,
        'for': cfg.alertFor.AuthprobeLoginFailing,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Probe {{ $labels.probe }} cannot log in to {{ $labels.target }}",
          description: "Probe {{ $labels.probe }} (target {{ $labels.target }}) has failed every login for " + util.durationWords(cfg.alertFor.AuthprobeLoginFailing) + ". {{ with printf \"authprobe_probe_outcome{probe=%q}\" $labels.probe | query }}{{ with index . 0 }}Last result {{ .Labels.result }} at step {{ .Labels.step }}, reason {{ .Labels.reason }}, {{ if .Labels.ldap_result_code }}LDAP {{ .Labels.ldap_result_code }}{{ else }}HTTP {{ .Labels.http_status }}{{ end }}.{{ end }}{{ end }}",
          runbook_url: runbook("AuthprobeLoginFailing"),
        },
      },
      // Most probes of one target fail: the login endpoint itself is down. Probes whose account
      // itself is the problem do not count: an expired password or missing PIN, or a directory
      // saying the probe's account is locked, disabled, expired or restricted (their tickets say
      // so; a directory target often has a single probe, whose locked account would page).
      // A wrong password (invalid_credentials) still counts: a directory rejecting good
      // credentials looks just like it.
      {
        alert: 'AuthprobeTargetDown',
        expr: |||
          (
            count by (target) (
              authprobe_probe_success == 0
                unless on (probe, target) authprobe_probe_outcome{result=~"password_expired|pin_not_initialized"}
                unless on (probe, target) authprobe_probe_outcome{reason=~"account_locked|account_disabled|account_expired|logon_restricted"}
            )
            / count by (target) (authprobe_probe_success)
          ) > %s
        ||| % util.num(cfg.targetDownRatio),
        'for': cfg.alertFor.AuthprobeTargetDown,
        labels: { severity: cfg.severities.page },
        annotations: {
          summary: "Logins to {{ $labels.target }} are failing for most probes",
          description: "{{ $value | humanizePercentage }} of the probes of target {{ $labels.target }} fail their logins. {{ with printf \"topk(1, count by (result, step, reason) (authprobe_probe_outcome{target=%q, result!=\\\"success\\\"}))\" $labels.target | query }}{{ with index . 0 }}Most common: result {{ .Labels.result }} at step {{ .Labels.step }}, reason {{ .Labels.reason }}.{{ end }}{{ end }}",
          runbook_url: runbook("AuthprobeTargetDown"),
        },
      },
      // p95 login latency over 2 s for 10 minutes (users notice; the client default timeout is 10 s).
      {
        alert: 'AuthprobeLoginSlow',
        expr: 'target:authprobe_login_duration_seconds:p95_5m > ' + util.num(cfg.loginSlowSeconds),
        'for': cfg.alertFor.AuthprobeLoginSlow,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Logins to {{ $labels.target }} are slow",
          description: "The 95th percentile of login duration on target {{ $labels.target }} is {{ $value | humanizeDuration }} (over " + util.num(cfg.loginSlowSeconds) + " s for " + util.durationWords(cfg.alertFor.AuthprobeLoginSlow) + ").",
          runbook_url: runbook("AuthprobeLoginSlow"),
        },
      },
      // Multi-window, multi-burn-rate alerts on the 99.9 % login SLO (error budget 0.1 %), as in
      // the Google SRE workbook: fast burns page, slow burns open a ticket.
      {
        alert: 'AuthprobeLoginAvailabilityBurnRate',
        expr: |||
          (
            target:authprobe_login_errors:ratio_rate1h > (14.4 * %(budget)s)
              and target:authprobe_login_errors:ratio_rate5m > (14.4 * %(budget)s)
          )
          or
          (
            target:authprobe_login_errors:ratio_rate6h > (6 * %(budget)s)
              and target:authprobe_login_errors:ratio_rate30m > (6 * %(budget)s)
          )
        ||| % { budget: budget },
        'for': cfg.alertFor.AuthprobeLoginAvailabilityBurnRateFast,
        labels: { severity: cfg.severities.page },
        annotations: {
          summary: "Target {{ $labels.target }} burns its login error budget fast",
          description: "Failed logins on {{ $labels.target }} would use up a 30-day " + sloPercent + " % budget in under 5 days (error ratio {{ $value | humanizePercentage }}).",
          runbook_url: runbook("AuthprobeLoginAvailabilityBurnRate"),
        },
      },
      {
        alert: 'AuthprobeLoginAvailabilityBurnRate',
        expr: |||
          (
            target:authprobe_login_errors:ratio_rate1d > (3 * %(budget)s)
              and target:authprobe_login_errors:ratio_rate2h > (3 * %(budget)s)
          )
          or
          (
            target:authprobe_login_errors:ratio_rate3d > (1 * %(budget)s)
              and target:authprobe_login_errors:ratio_rate6h > (1 * %(budget)s)
          )
        ||| % { budget: budget },
        'for': cfg.alertFor.AuthprobeLoginAvailabilityBurnRateSlow,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Target {{ $labels.target }} burns its login error budget",
          description: "Failed logins on {{ $labels.target }} are using the 30-day " + sloPercent + " % budget faster than it lasts (error ratio {{ $value | humanizePercentage }}).",
          runbook_url: runbook("AuthprobeLoginAvailabilityBurnRate"),
        },
      },
      {
        alert: 'AuthprobeRateLimited',
        expr: "authprobe_probe_outcome{result=\"rate_limited\"}",
        'for': cfg.alertFor.AuthprobeRateLimited,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Probe {{ $labels.probe }} is rate limited by {{ $labels.target }}",
          description: "{{ if $labels.ldap_result_code }}The directory answers probe {{ $labels.probe }} busy (step {{ $labels.step }}, LDAP {{ $labels.ldap_result_code }}){{ else }}The server answers probe {{ $labels.probe }} with \"Too many login requests\" (step {{ $labels.step }}, HTTP {{ $labels.http_status }}){{ end }}; authprobe backs off. Check the probe's interval and who else logs in with the account.",
          runbook_url: runbook("AuthprobeRateLimited"),
        },
      },
      // Not an outage: the probe account's password expired or its PIN was never set up.
      {
        alert: 'AuthprobeCredentialsNeedAttention',
        expr: "authprobe_probe_outcome{result=~\"password_expired|pin_not_initialized\"}",
        'for': cfg.alertFor.AuthprobeCredentialsNeedAttention,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Probe account of {{ $labels.probe }} needs attention ({{ $labels.result }})",
          description: "Probe {{ $labels.probe }} on {{ $labels.target }} gets {{ $labels.result }} at step {{ $labels.step }} (reason {{ $labels.reason }}). Renew the probe account's password or initialise its PIN, then update the secret and reload.",
          runbook_url: runbook("AuthprobeCredentialsNeedAttention"),
        },
      },
      {
        alert: 'AuthprobeAppKeyRejected',
        expr: "authprobe_probe_outcome{result=\"app_key_rejected\"}",
        'for': cfg.alertFor.AuthprobeAppKeyRejected,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Target {{ $labels.target }} rejects the app key of probe {{ $labels.probe }}",
          description: "The server says the Et-App-Key is not defined or does not exist (HTTP {{ $labels.http_status }}). Check the target's app_key in probes.yaml and whether the key was revoked.",
          runbook_url: runbook("AuthprobeAppKeyRejected"),
        },
      },
      // The OAuth 2.0 twin of AuthprobeAppKeyRejected: the authorization server refuses the client.
      // An LDAP client_rejected (the target's service account refused, or a bind without TLS
      // refused) is AuthprobeDirectoryBindRefused's.
      {
        alert: 'AuthprobeClientRejected',
        expr: "authprobe_probe_outcome{result=\"client_rejected\", ldap_result_code=\"\"}",
        'for': cfg.alertFor.AuthprobeClientRejected,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Target {{ $labels.target }} rejects the OAuth 2.0 client of probe {{ $labels.probe }}",
          description: "The authorization server answers {{ $labels.reason }} (HTTP {{ $labels.http_status }}): invalid_client is a wrong or expired client secret or key, or a deleted client; unauthorized_client and unsupported_grant_type mean the client may not use the probe's grant. Check the target's client settings in probes.yaml and at the provider.",
          runbook_url: runbook("AuthprobeClientRejected"),
        },
      },
      // The lifetime granted fell below half of the longest granted in the last day: a changed
      // token policy logs users out early or makes every client refresh far more often.
      {
        alert: 'AuthprobeTokenLifetimeDropped',
        expr: |||
          authprobe_probe_token_expires_in_seconds
            < %s * max_over_time(authprobe_probe_token_expires_in_seconds[1d])
        ||| % util.num(cfg.tokenLifetimeDropRatio),
        'for': cfg.alertFor.AuthprobeTokenLifetimeDropped,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Tokens of {{ $labels.target }} live much shorter than before",
          description: "Probe {{ $labels.probe }} is now granted tokens for {{ $value | humanizeDuration }}, less than " + (if cfg.tokenLifetimeDropRatio == 0.5 then "half" else util.num(cfg.tokenLifetimeDropRatio) + " times") + " of what it got in the last day. Check the authorization server's token lifetime policy and recent changes to it.",
          runbook_url: runbook("AuthprobeTokenLifetimeDropped"),
        },
      },
      // Runs go on with the document and keys fetched before, so logins may still work: this is
      // the only sign that the next key rotation or restart of authprobe will break them.
      {
        alert: 'AuthprobeDiscoveryFailing',
        expr: "authprobe_target_discovery_success == 0",
        'for': cfg.alertFor.AuthprobeDiscoveryFailing,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Discovery of {{ $labels.target }} is failing",
          description: "authprobe cannot fetch the discovery document or JWKS of target {{ $labels.target }} (its last fetch took {{ with printf \"authprobe_target_discovery_duration_seconds{target=%q}\" $labels.target | query }}{{ with index . 0 }}{{ .Value | humanizeDuration }}{{ end }}{{ end }}); probes use the copy fetched before, if any. Clients that start now, or meet a new signing key, fail.",
          runbook_url: runbook("AuthprobeDiscoveryFailing"),
        },
      },
      // Directories (LDAP / Active Directory). Every one a ticket: the probe's own account needs a
      // person, users' logins are not known to be broken (a directory that is down, or rejects
      // most probes' passwords, pages through AuthprobeTargetDown).
      // The directory answers, and refuses the bind: a wrong password (invalid_credentials), an
      // account it does not know (unknown_user, also a user search that found nobody), disabled,
      // expired or restricted, or a bind it wants over TLS (tls_required); at step Bind (the
      // probe's account) or ServiceBind (the target's service account). Locked accounts have
      // AuthprobeAccountLocked, expired passwords AuthprobeCredentialsNeedAttention.
      {
        alert: 'AuthprobeDirectoryBindRefused',
        expr: "authprobe_probe_outcome{ldap_result_code!=\"\", result=~\"auth_failed|client_rejected\", reason!=\"account_locked\"}",
        'for': cfg.alertFor.AuthprobeDirectoryBindRefused,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Directory {{ $labels.target }} refuses the bind of probe {{ $labels.probe }} ({{ $labels.reason }})",
          description: "{{ $labels.target }} refuses probe {{ $labels.probe }} at step {{ $labels.step }}: {{ $labels.reason }} (LDAP {{ $labels.ldap_result_code }}). {{ if eq $labels.step \"ServiceBind\" }}It is the target's service account (its bind_dn) that is refused: every search-then-bind probe of the target fails with it. {{ end }}{{ with printf \"authprobe_probe_backoff_seconds{probe=%q,target=%q} > 0\" $labels.probe $labels.target | query }}{{ with index . 0 }}The lockout guard holds the credentials back ({{ .Value | humanizeDuration }} between binds) and reports this result until it tries again. {{ end }}{{ end }}The directory itself answers: fix the account or the probe's credentials, then reload.",
          runbook_url: runbook("AuthprobeDirectoryBindRefused"),
        },
      },
      // The directory says the account is locked (AD data 775, ppolicy accountLocked): someone or
      // something is failing logins with it. authprobe's lockout guard is not retrying it.
      {
        alert: 'AuthprobeAccountLocked',
        expr: "authprobe_probe_outcome{reason=\"account_locked\"}",
        'for': cfg.alertFor.AuthprobeAccountLocked,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "The account of probe {{ $labels.probe }} is locked in {{ $labels.target }}",
          description: "{{ $labels.target }} answers the bind of probe {{ $labels.probe }} at step {{ $labels.step }} with account_locked (LDAP {{ $labels.ldap_result_code }}){{ if eq $labels.step \"ServiceBind\" }}: it is the target's service account, so every search-then-bind probe of the target fails{{ end }}. authprobe's lockout guard holds the credentials back for max_backoff (1 h by default) after the first refusal, so look for who else fails logins with this account, unlock it, and expect the alert to clear when the hold ends.",
          runbook_url: runbook("AuthprobeAccountLocked"),
        },
      },
      // The directory says when the probe account's password expires (the password policy's
      // warning, or AD's msDS-UserPasswordExpiryTimeComputed with password_expiry: true): under
      // 14 days, or already past. The last value of the hour, so that a failed run (which reports
      // nothing) does not resolve and re-raise it; unless the probe's last run succeeded without
      // any warning (the password was changed: ppolicy stops warning).
      {
        alert: 'AuthprobePasswordExpiringSoon',
        expr: |||
          last_over_time(authprobe_probe_password_expires_in_seconds[1h]) < %(days)s * 86400
            unless on (probe, target) (authprobe_probe_success == 1 unless on (probe, target) authprobe_probe_password_expires_in_seconds)
        ||| % { days: util.num(cfg.passwordExpiryDays) },
        'for': cfg.alertFor.AuthprobePasswordExpiringSoon,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "The password of probe {{ $labels.probe }}'s account on {{ $labels.target }} {{ if lt $value 0.0 }}has expired{{ else }}expires soon{{ end }}",
          description: "{{ $labels.target }} tells probe {{ $labels.probe }} that its account's password {{ if lt $value 0.0 }}has expired ({{ $value | humanizeDuration }} left){{ else }}expires in {{ $value | humanizeDuration }}{{ end }}. Once expired, its binds fail (password_expired, after any grace logins) and the directory is no longer watched through it. Change the password, update the probe's secret and reload authprobe.",
          runbook_url: runbook("AuthprobePasswordExpiringSoon"),
        },
      },
      // The password has expired and the directory still accepts it on grace logins
      // (graceAuthNsRemaining), each run of the probe using one: with 3 and a 1-minute interval
      // they are gone in 3 minutes. Kept 15 minutes after the last report, so that a probe that
      // uses them up fast still raises it, and AuthprobeCredentialsNeedAttention (password_expired,
      // for 15 minutes) takes over; unless the probe now succeeds without grace logins (renewed).
      {
        alert: 'AuthprobeGraceLoginsInUse',
        expr: |||
          last_over_time(authprobe_probe_grace_logins_remaining[15m])
            unless on (probe, target) (authprobe_probe_success == 1 unless on (probe, target) authprobe_probe_grace_logins_remaining)
        |||,
        'for': cfg.alertFor.AuthprobeGraceLoginsInUse,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "The password of probe {{ $labels.probe }}'s account has expired: {{ $value }} grace logins left",
          description: "{{ $labels.target }} accepts the expired password of probe {{ $labels.probe }} on grace logins only, and every run of the probe uses one. At 0 its binds fail with password_expired and only an administrator can reset the password. Change the password now (a grace login allows it), update the probe's secret and reload authprobe.",
          runbook_url: runbook("AuthprobeGraceLoginsInUse"),
        },
      },
      // No finished run for 3 intervals (plus any lockout backoff): the probe is stuck or unscheduled.
      {
        alert: 'AuthprobeProbeStale',
        expr: |||
          time() - authprobe_probe_last_run_timestamp_seconds
            > %s * (authprobe_probe_interval_seconds + authprobe_probe_backoff_seconds)
        ||| % util.num(cfg.probeStaleIntervals),
        'for': cfg.alertFor.AuthprobeProbeStale,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "Probe {{ $labels.probe }} has not run for " + util.num(cfg.probeStaleIntervals) + " intervals",
          description: "The last run of probe {{ $labels.probe }} (target {{ $labels.target }}) finished {{ $value | humanizeDuration }} ago.",
          runbook_url: runbook("AuthprobeProbeStale"),
        },
      },
      {
        alert: 'AuthprobeTLSCertExpiringSoon',
        expr: 'authprobe_probe_tls_cert_not_after_timestamp_seconds - time() < %s * 86400' % util.num(cfg.tlsCertExpiryDays),
        'for': cfg.alertFor.AuthprobeTLSCertExpiringSoon,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "A certificate of {{ $labels.target }} expires soon",
          description: "The certificate chain served to probe {{ $labels.probe }} by {{ $labels.target }} expires in {{ $value | humanizeDuration }}.",
          runbook_url: runbook("AuthprobeTLSCertExpiringSoon"),
        },
      },
      {
        alert: 'AuthprobeConfigReloadFailed',
        expr: "authprobe_config_last_reload_successful == 0",
        'for': cfg.alertFor.AuthprobeConfigReloadFailed,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "authprobe {{ $labels.instance }} could not load its new configuration",
          description: "The last reload of probes.yaml failed; the previous configuration keeps running. The error is in authprobe's log and in the answer of POST /-/reload.",
          runbook_url: runbook("AuthprobeConfigReloadFailed"),
        },
      },
      // Writes failing and none succeeding for 5 minutes: a batch that failed once and went
      // through with the next is no reason to call anyone.
      {
        alert: 'AuthprobeStateNotSaved',
        expr: |||
          authprobe_storage_up == 0
            or (increase(authprobe_storage_write_failures_total[5m]) > 0
                and time() - authprobe_storage_last_write_success_timestamp_seconds > %s)
        ||| % util.num(cfg.storageWriteStaleSeconds),
        'for': cfg.alertFor.AuthprobeStateNotSaved,
        labels: { severity: cfg.severities.ticket },
        annotations: {
          summary: "authprobe {{ $labels.instance }} cannot save its state",
          description: "Probe history, availability and lockout guard are not being written to the storage path: a restart would forget them, and a probe the lockout guard holds back would log in again at once. The cause is in authprobe's log (disk full, an unwritable path, a file held by another process).",
          runbook_url: runbook("AuthprobeStateNotSaved"),
        },
      },
      {
        alert: 'AuthprobeExporterDown',
        expr: 'up{%(sel)s} == 0 or absent(up{%(sel)s})' % { sel: cfg.authprobeSelector },
        'for': cfg.alertFor.AuthprobeExporterDown,
        labels: { severity: cfg.severities.page },
        annotations: {
          summary: "authprobe is down: the login path is not monitored",
          description: "Prometheus cannot scrape authprobe {{ $labels.instance }}; nobody would notice a login outage.",
          runbook_url: runbook("AuthprobeExporterDown"),
        },
      },
    ],
  },
}
