/*
 * Credentials in URLs ("https://user:token@mirror/...") never leave the process: everything
 * headed for the log, a --json event, an error message, inspect's output or manifest.json
 * goes through imgf_redact first.
 */
#ifndef IMGF_REDACT_H
#define IMGF_REDACT_H

/*
 * A copy of `text` (newly allocated) with the userinfo of every URL in it replaced by three
 * asterisks: "fetch 'https://u:tok@host/x'" becomes "fetch 'https://" "***@host/x'".
 * A path component of a URL that looks like userinfo ("USER:PASS@..."), as a URL turned into
 * a path holds it ("file:///mirror/files/u:tok@host/x"), is replaced the same way, unless a
 * digest follows the '@' ("pause:3.10@sha256:..."). docker:// references
 * ("docker://busybox@sha256:...") hold a digest, not credentials, and are left alone.
 */
char *imgf_redact(const char *text);

#endif
