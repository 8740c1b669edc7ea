/*
 * The one shell quoter (strbuf_add_shell_quoted, shell_quote_argv): its exact text, and that
 * /bin/sh reads every quoted word back byte for byte, whatever it holds.
 */
#include <stdio.h>
#include <sys/wait.h>

#include "strbuf.h"
#include "test.h"
#include "util.h"

static char *quoted(const char *s)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_add_shell_quoted(&sb, s);
	return strbuf_detach(&sb, NULL);
}

/* What sh prints for `printf %s WORD` with WORD the quoted text (newly allocated). */
static char *sh_reads(const char *word)
{
	struct strbuf cmd = STRBUF_INIT;
	strbuf_addstr(&cmd, "printf %s ");
	strbuf_add_shell_quoted(&cmd, word);
	FILE *p = popen(cmd.buf, "r");
	strbuf_release(&cmd);
	CHECK(p != NULL);
	if (!p)
		return xstrdup("");
	struct strbuf out = STRBUF_INIT;
	char buf[256];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
		strbuf_add(&out, buf, n);
	CHECK(pclose(p) == 0);
	return strbuf_detach(&out, NULL);
}

TEST(quotes_every_word_and_escapes_single_quotes)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"plain", "'plain'"},
		{"", "''"},
		{"it's", "'it'\\''s'"},
		{"'", "''\\'''"},
		{"a b\tc", "'a b\tc'"},
		{"two\nlines", "'two\nlines'"},
		{"$HOME `id` \"x\" \\ *", "'$HOME `id` \"x\" \\ *'"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *q = quoted(cases[i].in);
		CHECK_STR(q, cases[i].want);
		free(q);
	}
}

TEST(sh_reads_back_what_was_quoted)
{
	static const char *const words[] = {
		"plain",   "",	 "it's", "''", "a b", "two\nlines\n", "$(id) `id` $HOME",
		"\\'\\\"", "-n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
		char *got = sh_reads(words[i]);
		CHECK_STR(got, words[i]);
		free(got);
	}
}

TEST(an_argv_is_one_command_line_of_quoted_words)
{
	char *line = shell_quote_argv((char *const[]){"tar", "-C", "/my dir", "it's", "", NULL});
	CHECK_STR(line, "'tar' '-C' '/my dir' 'it'\\''s' ''");
	free(line);
	line = shell_quote_argv((char *const[]){NULL});
	CHECK_STR(line, "");
	free(line);
}
