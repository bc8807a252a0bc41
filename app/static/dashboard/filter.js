// The label filter box: exact key=value pairs and Prometheus matchers -> query parameters.

const SEPARATORS = /[\s,]+/y;
const MATCHER_GROUP = /\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}/g;
const TERM = /([A-Za-z_][A-Za-z0-9_]*)\s*(!=|=~|!~|=|:)\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)/y;

// `host=server1 region:us-west {host=~"server[12]"} env!=dev` -> exact `label=KEY:VALUE`
// pairs plus one Prometheus `match={...}` holding every braced group and every non-equality term.
export function parseFilter(text) {
  const labels = [];
  const matchers = [];
  const rest = text.replace(MATCHER_GROUP, (group) => {
    const inner = group.slice(1, -1).trim();
    if (inner) matchers.push(inner);
    return " ";
  });
  let at = 0;
  while (at < rest.length) {
    SEPARATORS.lastIndex = at;
    if (SEPARATORS.test(rest)) at = SEPARATORS.lastIndex;
    if (at >= rest.length) break;
    TERM.lastIndex = at;
    const term = TERM.exec(rest);
    if (!term) {
      const near = rest.slice(at, at + 24).trim();
      throw new Error(`Label filter: cannot read "${near}". Use key=value or {key=~"regex"}.`);
    }
    at = TERM.lastIndex;
    const [, name, op, raw] = term;
    const value = raw.startsWith('"') ? JSON.parse(raw) : raw;
    if (op === "=" || op === ":") labels.push(`${name}:${value}`);
    else matchers.push(`${name}${op}${JSON.stringify(value)}`);
  }
  return { labels, match: matchers.length ? `{${matchers.join(",")}}` : "" };
}
