#!/usr/bin/env bash
# needs: none
# Every integration script says what it needs in a "# needs: WORD..." header line
# (tests/lib/needs.sh, tests/README.md), so `make check-quick` picks the ones that need neither
# Docker nor a VM by their headers, and a new script without one fails here and in check-quick.
# shellcheck disable=SC2016,SC2034 # test bodies are single-quoted; the harness evals them
. "$(dirname "$0")/../lib/harness.sh"
NEEDS=$TOP/tests/lib/needs.sh

test_expect_success "every tests/integration script has a valid '# needs:' line" '
	bash "$NEEDS" check 2>"$TMP/err" || { cat "$TMP/err"; exit 1; }
	test ! -s "$TMP/err"
'

test_expect_success "check-quick takes the scripts that need neither docker nor vm, and only those" '
	cd "$TOP" &&
	bash "$NEEDS" quick >"$TMP/quick" &&
	for t in tests/integration/t*.sh; do
		w=" $(sed -n "1,20s/^# needs://p" "$t" | head -n 1) "
		case $w in
		*" docker "* | *" vm "*) ! grep -qx "$t" "$TMP/quick" || exit 1 ;;
		*) grep -qx "$t" "$TMP/quick" || exit 1 ;;
		esac
	done &&
	grep -qx tests/integration/t0100-cli.sh "$TMP/quick" &&
	! grep -q t1200-docker-kind-node "$TMP/quick" &&
	! grep -q t1255-qemu "$TMP/quick"
'

test_expect_success "a script without the header, or with an unknown word, is refused by name" '
	printf "#!/usr/bin/env bash\n# lane: vm\n# what it proves\n" >"$TMP/t9998-bare.sh" &&
	printf "#!/usr/bin/env bash\n# needs: docker kvm\n" >"$TMP/t9999-odd.sh" &&
	printf "#!/usr/bin/env bash\n# needs: none docker\n" >"$TMP/t9997-both.sh" &&
	! bash "$NEEDS" quick "$TMP/t9998-bare.sh" >"$TMP/out" 2>"$TMP/err" &&
	grep -q "t9998-bare.sh: no '"'"'# needs: WORD...'"'"' line" "$TMP/err" &&
	! bash "$NEEDS" check "$TMP/t9999-odd.sh" 2>"$TMP/err" &&
	grep -q "t9999-odd.sh: '"'"'# needs:'"'"' names '"'"'kvm'"'"'" "$TMP/err" &&
	! bash "$NEEDS" check "$TMP/t9997-both.sh" 2>"$TMP/err" &&
	grep -q "'"'"'none'"'"' stands alone" "$TMP/err"
'

test_done
