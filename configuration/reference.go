package configuration

import (
	"fmt"
	"strings"
)

// kindText explains each kind of value in the reference.
var kindText = map[string]string{
	"bool":    "true or false",
	"int":     "whole number",
	"bytes":   "whole number of bytes",
	"seconds": "whole seconds as the original (`5`), or a Go duration (`1500ms`, `2m`)",
	"path":    "file or directory path",
	"text":    "text",
	"choice":  "one of the values listed",
}

// Reference is docs/CONFIGURATION.md: every setting, grouped as the seed file is,
// with its default, the kind of value it takes, whether a running gateway applies
// a change of it (SIGHUP or an edit of the file), and what it does.
func Reference() string {
	var b strings.Builder
	b.WriteString(`# Configuration reference

Generated from the configuration package (` + "`go test ./configuration -run TestReferenceDoc -update`" + `); a test fails when it is out of date.

Every setting can be given in three places, later ones winning: the configuration file (` + "`-c FILE`" + `: a ` + "`.properties`" + ` file as the original's, or ` + "`.yaml`, `.toml`, `.json`" + `), an environment variable ` + "`DYNODE_<KEY>`" + ` (` + "`DYNODE_SERVERS=a:6379,b:6379`" + `), and a flag ` + "`--<key>`" + `. ` + "`dynode-broadcaster check-config -c FILE`" + ` prints the effective values (secrets masked) or every problem with its line.

**Live**: *yes* means a running gateway applies a change on SIGHUP or when the configuration file changes (per-connection limits apply to new connections); *restart* means the change is reported and waits for a restart.

Kinds of value:
`)
	for _, k := range []string{"bool", "int", "bytes", "seconds", "path", "text", "choice"} {
		fmt.Fprintf(&b, "- `%s`: %s\n", k, kindText[k])
	}
	title := ""
	for _, s := range settings {
		if s.group != title {
			title = s.group
			fmt.Fprintf(&b, "\n## %s\n\n| key | default | kind | live | meaning |\n|---|---|---|---|---|\n", title)
		}
		kind := s.apply.kind
		if kind == "choice" {
			kind = strings.Join(s.apply.choices, " \\| ")
		}
		live := "yes"
		if !Live(s.key) {
			live = "restart"
		}
		def := "`" + s.def + "`"
		if s.def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", s.key, def, kind, live, strings.ReplaceAll(s.help, "|", "\\|"))
	}
	return b.String()
}
