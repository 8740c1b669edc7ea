/* Every builder, provisioner and post-processor compiled into imgforge. */
#ifndef IMGF_PLUGINS_H
#define IMGF_PLUGINS_H

/* Register them all with the core's tables (builder.c, provisioner.c, postprocessor.c), once:
 * main() and the unit tests' main call it first. The core names no plugin itself, so a
 * plugin's file depends on the core and never the other way round. */
void imgf_plugins_register(void);

#endif
