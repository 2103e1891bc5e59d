# bash completion for blockfs: commands, then the command's flags.
_blockfs() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W "$(blockfs help 2>/dev/null | awk '/^  [a-z]/ {print $1}')" -- "$cur"))
		return
	fi
	case "$cur" in
	-*)
		local flags
		flags=$(blockfs help "${COMP_WORDS[1]}" 2>/dev/null | grep -o -- '--[a-z0-9-]*' | sort -u)
		COMPREPLY=($(compgen -W "$flags" -- "$cur"))
		;;
	*) COMPREPLY=($(compgen -f -- "$cur")) ;;
	esac
}
complete -F _blockfs blockfs
