// Small helpers shared by the mixin's files.
{
  // A Prometheus duration as words, for annotations: '5m' -> '5 minutes', '1h' -> '1 hour';
  // a compound one ('1h30m') as it is.
  durationWords(d)::
    local units = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week' };
    local n = std.substr(d, 0, std.length(d) - 1);
    local unit = d[std.length(d) - 1];
    local digits = [c for c in std.stringChars(n) if std.length(std.findSubstr(c, '0123456789')) == 0] == [];
    if std.objectHas(units, unit) && n != '' && digits
    then n + ' ' + units[unit] + (if n == '1' then '' else 's')
    else d,

  // A number as PromQL and annotations print it (shortest form: 0.001, 14.4, 99.9).
  num(x):: std.format('%g', x),
}
