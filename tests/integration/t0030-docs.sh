#!/usr/bin/env bash
# needs: none
# The man page (doc/imgforge.1) and the bash completion (contrib/imgforge.bash) cannot drift
# from imgforge's subcommand and option tables: they are what hack/gen-docs.sh writes from the
# binary's own help, every option a command takes appears in both for that command and nothing
# else does, the completion completes, the page renders without warnings, and `make install`
# installs both.
# (`make -o imgforge install`: the binary as it is, never rebuilt with other flags mid-run.)
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
[ -x "$IMGF" ] || die "no imgforge binary at $IMGF (run make)"

# The commands, and each one's options, as the binary's tables give them.
"$IMGF" help | sed -n '/^commands:$/,/^$/{s/^  \([a-z][a-z-]*\) .*/\1/p}' >"$TMP/commands"
for c in $(cat "$TMP/commands"); do
	"$IMGF" "$c" --help | sed -n '/^options/,$s/^  \(--[a-z][a-z-]*\) .*/\1/p' | sort >"$TMP/opts.$c"
done

test_expect_success "the committed man page and completion are what hack/gen-docs.sh writes now" '
	bash "$TOP/hack/gen-docs.sh" "$IMGF" "$TMP/gen" &&
	diff -u "$TOP/doc/imgforge.1" "$TMP/gen/doc/imgforge.1" &&
	diff -u "$TOP/contrib/imgforge.bash" "$TMP/gen/contrib/imgforge.bash"
'

test_expect_success "the man page documents each command with exactly the options it takes" '
	test "$(wc -l <"$TMP/commands")" -ge 8 &&
	sed -n "s/^\.SS //p" "$TOP/doc/imgforge.1" | sed "s/\\\\-/-/g" >"$TMP/man-commands" &&
	diff -u "$TMP/commands" "$TMP/man-commands" &&
	for c in $(cat "$TMP/commands"); do
		sed -n "/^\.SS $(echo "$c" | sed "s/-/\\\\\\\\-/g")\$/,/^\.S[SH] /p" "$TOP/doc/imgforge.1" |
			sed -n "s/^\.BI\{0,1\} \\\\-\\\\-\([a-z\\\\-]*\).*/--\1/p" | sed "s/\\\\-/-/g" | sort >"$TMP/man.$c"
		diff -u "$TMP/opts.$c" "$TMP/man.$c" || { echo "man page, $c"; exit 1; }
	done
'

test_expect_success "the completion offers each command exactly the options it takes" '
	for c in $(cat "$TMP/commands"); do
		sed -n "s/^	$c) opts='"'"'\(.*\)'"'"' ;;\$/\1/p" "$TOP/contrib/imgforge.bash" | tr " " "\n" |
			grep . | sort >"$TMP/comp.$c"
		diff -u "$TMP/opts.$c" "$TMP/comp.$c" || { echo "completion, $c"; exit 1; }
	done &&
	test "$(grep -c "^	[a-z-]*) opts=" "$TOP/contrib/imgforge.bash")" = "$(wc -l <"$TMP/commands")"
'

# complete WORD...: what the completion offers for the command line ending in the last WORD.
complete_words() {
	(
		. "$TOP/contrib/imgforge.bash"
		COMP_WORDS=(imgforge "$@")
		COMP_CWORD=$#
		_imgforge
		printf "%s\n" "${COMPREPLY[@]}"
	)
}

test_expect_success "the completion completes commands, options, choices and cache subcommands" '
	test "$(complete_words bu)" = build &&
	test "$(complete_words image- | tr "\n" " ")" = "image-upload image-list " &&
	test "$(complete_words build --o | tr "\n" " ")" = "--only --on-error --output-dir " &&
	test "$(complete_words build -on-error "" | tr "\n" " ")" = "cleanup abort " &&
	test "$(complete_words image-upload --d)" = --dry-run &&
	test -z "$(complete_words validate --fo)" &&
	test "$(complete_words cache p)" = prune &&
	test -z "$(complete_words build --parallel-builds "")"
'

if ! require_cmd groff; then
	TEST_CLAIM=1 test_skip "the man page renders" "groff is not installed (hack/install-deps.sh --test)"
else
	test_expect_success "the man page renders without a warning" '
		LC_ALL=C.UTF-8 groff -man -ww -z "$TOP/doc/imgforge.1" 2>"$TMP/groff" &&
		test ! -s "$TMP/groff" &&
		LC_ALL=C.UTF-8 groff -man -Tascii -P-cbou "$TOP/doc/imgforge.1" 2>/dev/null >"$TMP/page" &&
		grep -q "^       imgforge image-upload \[--key-file F\]" "$TMP/page" &&
		grep -q "^       --parallel-builds N" "$TMP/page"
	'
fi

test_expect_success "make install installs the man page and the completion" '
	make -C "$TOP" -s -o imgforge install DESTDIR="$TMP/root" PREFIX=/usr >"$TMP/install.log" 2>&1 &&
	test -f "$TMP/root/usr/share/man/man1/imgforge.1" &&
	cmp "$TOP/contrib/imgforge.bash" "$TMP/root/usr/share/bash-completion/completions/imgforge" &&
	grep -q "^\.I /usr/share/imgforge/config/" "$TMP/root/usr/share/man/man1/imgforge.1" &&
	! grep -q /usr/local "$TMP/root/usr/share/man/man1/imgforge.1" &&
	make -C "$TOP" -s uninstall DESTDIR="$TMP/root" PREFIX=/usr &&
	test ! -e "$TMP/root/usr/share/man/man1/imgforge.1" &&
	test ! -e "$TMP/root/usr/share/bash-completion/completions/imgforge"
'

test_done
