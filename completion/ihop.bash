# SPDX-License-Identifier: MIT
# bash completion for ihop: commands, each command's options (read from
# its --help, so they cannot drift), files for options that take one, and
# release names once a store's path has been typed (STORE/<TAB>).

# The release descriptions in a store: plain files that start "IHOP1".
_ihop_releases()
{
        local store=$1 f magic
        [ -d "$store/chunks" ] || return 0
        for f in "$store"/*; do
                [ -f "$f" ] && [ ! -L "$f" ] || continue
                magic=$(head -c 5 -- "$f" 2>/dev/null)
                [ "$magic" = IHOP1 ] && printf '%s\n' "$f"
        done
}

_ihop()
{
        local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
        local ihop=${COMP_WORDS[0]} cmd="" i help arg

        for ((i = 1; i < COMP_CWORD; i++)); do
                case ${COMP_WORDS[i]} in
                -*) ;;
                *) cmd=${COMP_WORDS[i]}; break ;;
                esac
        done
        if [ -z "$cmd" ]; then
                if [[ $cur == -* ]]; then
                        COMPREPLY=($(compgen -W "--verbose --quiet --version --help -v -q" -- "$cur"))
                else
                        local cmds
                        cmds=$("$ihop" --help 2>/dev/null | sed -n '/^Commands/,/^$/s/^  \([a-z]*\) .*/\1/p')
                        COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
                fi
                return 0
        fi

        help=$("$ihop" "$cmd" --help 2>/dev/null)
        # The option before the word takes an argument: a file, or a directory.
        if [[ $prev == -* ]]; then
                arg=$(printf '%s\n' "$help" | sed -n "s/^ *\(-[a-zA-Z], \)\{0,1\}\(--[a-z-]*\)\( \([A-Z][^ ]*\)\)\{0,1\} .*/\2 \4/p" |
                        while read -r long value; do
                                short=$(printf '%s\n' "$help" | sed -n "s/^ *\(-[a-zA-Z]\), $long .*/\1/p")
                                if [ "$prev" = "$long" ] || [ -n "$short" ] && [ "$prev" = "$short" ]; then
                                        echo "${value:-none}"
                                        break
                                fi
                        done)
                case $arg in
                DIR)
                        COMPREPLY=($(compgen -d -- "$cur"))
                        return 0
                        ;;
                none | "") ;;
                *)
                        COMPREPLY=($(compgen -f -- "$cur"))
                        return 0
                        ;;
                esac
        fi
        if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$(printf '%s\n' "$help" | grep -oE -- '(^| )--?[a-zA-Z][a-z-]*' | tr -d ' ') --help" -- "$cur"))
                return 0
        fi
        if [[ $cur == */* ]] && [ -d "${cur%/*}/chunks" ]; then
                COMPREPLY=($(compgen -W "$(_ihop_releases "${cur%/*}")" -- "$cur"))
                return 0
        fi
        COMPREPLY=($(compgen -f -- "$cur"))
        compopt -o filenames 2>/dev/null
        return 0
}

complete -F _ihop ihop
