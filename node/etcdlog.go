package node

import (
	"regexp"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcd logs a slow or failed raft request whole ("apply request took too
// long", "failed to apply request"), and an Authenticate request's text
// holds the simple token it hands out: a credential to etcd for minutes.
// redactTokens keeps it out of the node's log.
func redactTokens(core zapcore.Core) zapcore.Core { return tokenRedactor{core} }

var simpleToken = regexp.MustCompile(`simple_token:[^\s>]+`)

type tokenRedactor struct{ zapcore.Core }

func (r tokenRedactor) With(fs []zapcore.Field) zapcore.Core {
	return tokenRedactor{r.Core.With(redactFields(fs))}
}

func (r tokenRedactor) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if r.Enabled(e.Level) {
		return ce.AddCore(e, r)
	}
	return ce
}

func (r tokenRedactor) Write(e zapcore.Entry, fs []zapcore.Field) error {
	e.Message = simpleToken.ReplaceAllString(e.Message, "simple_token:<redacted>")
	return r.Core.Write(e, redactFields(fs))
}

func redactFields(fs []zapcore.Field) []zapcore.Field {
	var out []zapcore.Field // a copy, made only if a field needs it
	for i, f := range fs {
		if f.Type == zapcore.StringType && simpleToken.MatchString(f.String) {
			if out == nil {
				out = append([]zapcore.Field(nil), fs...)
			}
			out[i] = zap.String(f.Key, simpleToken.ReplaceAllString(f.String, "simple_token:<redacted>"))
		}
	}
	if out == nil {
		return fs
	}
	return out
}
