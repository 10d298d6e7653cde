#!/bin/sh
# Print, one a line, the packages the Dockerfile's `apt-get install` names in a
# stage: build (the first) or runtime (the last). The one list of each:
# scripts/deps.sh installs the build stage's on the host, tests/vm/build.sh puts
# the runtime stage's in the VM's root.
#   scripts/dockerfile-pkgs.sh build|runtime [DOCKERFILE]
set -eu
case "${1:-}" in
build | runtime) ;;
*) echo "usage: $0 build|runtime [DOCKERFILE]" >&2; exit 2 ;;
esac
file=${2:-$(dirname "$0")/../Dockerfile}
# Continuation lines joined; the words after `apt-get install` up to the next
# && or ;, options dropped.
awk -v want="$1" '
	/^FROM[ \t]/ { stage++ }
	stage == 0 { next }
	{ cont = sub(/\\[ \t]*$/, ""); cmd = cmd " " $0; if (cont) next }
	{
		n = split(cmd, w, /[ \t]+/); apt = 0; on = 0
		for (i = 1; i <= n; i++) {
			if (w[i] == "&&" || w[i] == ";") { apt = 0; on = 0 }
			else if (w[i] == "apt-get") apt = 1
			else if (apt && w[i] == "install") on = 1
			else if (on && w[i] != "" && w[i] !~ /^-/) pkgs[stage] = pkgs[stage] w[i] "\n"
		}
		cmd = ""
	}
	END {
		s = want == "build" ? 1 : stage
		if (pkgs[s] == "") { print "no apt-get install in the Dockerfile'"'"'s " want " stage" > "/dev/stderr"; exit 1 }
		printf "%s", pkgs[s]
	}' "$file"
