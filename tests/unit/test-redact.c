/* src/base/redact.c: a URL's userinfo never survives into text that leaves the process. */
#include <stdlib.h>

#include "redact.h"
#include "util.h"

#include "test.h"

static void check_redact(const char *in, const char *want)
{
	char *got = imgf_redact(in);
	CHECK_STR(got, want);
	free(got);
}

TEST(userinfo_is_replaced_in_urls_inside_text)
{
	check_redact("fetch 'runc' from 'https://user:s3cret@mirror.example/runc': http 404",
		     "fetch 'runc' from 'https://***@mirror.example/runc': http 404");
	check_redact("https://tok@h", "https://***@h");
	check_redact("http://u:p@h:8080?x=1", "http://***@h:8080?x=1");
	check_redact("file:https://u:p@h/SHA256SUMS", "file:https://***@h/SHA256SUMS");
	/* Two URLs, JSON-quoted, as an event line holds them. */
	check_redact("{\"url\":\"http://a:b@h1/x\",\"c\":\"ftp://c@h2\"}",
		     "{\"url\":\"http://***@h1/x\",\"c\":\"ftp://***@h2\"}");
	/* An '@' in the userinfo itself: everything up to the last one goes. */
	check_redact("https://us@er:p@ss@h/", "https://***@h/");
}

TEST(urls_without_userinfo_and_other_text_are_unchanged)
{
	check_redact("", "");
	check_redact("no urls here, a@b", "no urls here, a@b");
	check_redact("https://h/path@x?q=a@b#c@d", "https://h/path@x?q=a@b#c@d");
	check_redact("file:///srv/a@b", "file:///srv/a@b");
	check_redact("docker://busybox@sha256:abc", "docker://busybox@sha256:abc");
	check_redact("'https://h' and 'x y@z'", "'https://h' and 'x y@z'");
	check_redact("://@x", "://@x");
	CHECK(imgf_redact(NULL) == NULL);
}

TEST(userinfo_turned_into_a_path_component_is_replaced_too)
{
	/* what an older `imgforge mirror` wrote into vars.json, and builds then recorded */
	check_redact("file:///srv/mirror/files/user:s3cret@mirror.example/containerd.tar.gz",
		     "file:///srv/mirror/files/***@mirror.example/containerd.tar.gz");
	check_redact("'file:///m/files/u:p@h/x' and 'file:///m/files/h/y'",
		     "'file:///m/files/***@h/x' and 'file:///m/files/h/y'");
	check_redact("{\"url\":\"file:///m/files/u:p@h/x\"}",
		     "{\"url\":\"file:///m/files/***@h/x\"}");
	check_redact("file:https://u:p@h/a/b:c@d/SUMS", "file:https://***@h/a/***@d/SUMS");
	/* a URL nested in a path has its own authority */
	check_redact("file:///m/https://tok@h/x", "file:///m/https://***@h/x");
	/* a digest reference and an '@' without a ':' before it stay */
	check_redact("https://h/v2/pause:3.10@sha256:abc", "https://h/v2/pause:3.10@sha256:abc");
	check_redact("file:///srv/a@b/c:d", "file:///srv/a@b/c:d");
	/* the URL ends at a quote or a blank: what follows is not its path */
	check_redact("'https://h/x' then a:b@c", "'https://h/x' then a:b@c");
}
