package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Shell completion: each script asks cfgadm itself what may come next
// (cfgadm WORDS... --generate-bash-completion), which answers with the
// commands, the flags, or the schema's key names from the node.
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: source <(cfgadm completion bash), or zsh, or fish",
		ArgsUsage: "bash|zsh|fish",
		Action: func(c *cli.Context) error {
			if err := args(c, 1, "bash, zsh or fish"); err != nil {
				return err
			}
			script, ok := completionScripts[c.Args().First()]
			if !ok {
				return usageError("completion is for bash, zsh or fish, not %q", c.Args().First())
			}
			_, err := fmt.Fprint(stdout(c), script)
			return err
		},
	}
}

var completionScripts = map[string]string{
	"bash": `# cfgadm completion for bash: source <(cfgadm completion bash)
_cfgadm() {
  local cur words
  cur="${COMP_WORDS[COMP_CWORD]}"
  words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$("${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
  fi
}
complete -o default -F _cfgadm cfgadm
`,
	"zsh": `#compdef cfgadm
# cfgadm completion for zsh: source <(cfgadm completion zsh)
_cfgadm() {
  local -a opts
  local cur=${words[CURRENT]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:CURRENT-1} $cur --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:CURRENT-1} --generate-bash-completion 2>/dev/null)}")
  fi
  compadd -a opts
}
compdef _cfgadm cfgadm
`,
	"fish": `# cfgadm completion for fish: cfgadm completion fish | source
function __cfgadm_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    if string match -q -- '-*' $cur
        $words $cur --generate-bash-completion 2>/dev/null
    else
        $words --generate-bash-completion 2>/dev/null
    end
end
complete -c cfgadm -f -a '(__cfgadm_complete)'
`,
}

// completeKeys completes a key or prefix argument with the schema's key
// names, and flags as urfave/cli does (it reads os.Args, as here: the word
// before --generate-bash-completion is the one being completed).
func completeKeys(c *cli.Context) {
	if n := len(os.Args); n >= 2 && strings.HasPrefix(os.Args[n-2], "-") {
		cli.DefaultCompleteWithFlags(c.Command)(c)
		return
	}
	for _, k := range keyNames(c) {
		fmt.Fprintln(c.App.Writer, k)
	}
}
