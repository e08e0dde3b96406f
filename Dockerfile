# The lock.io node image: a statically linked lockio on an empty base.
#
# Nothing is compiled or pulled here: `scratch` is built into Docker, and the binary is built
# on the host beforehand by scripts/build-static (scripts/compose runs it before `up` and
# `build`; see README, "Run with Docker"). glibc is linked in statically and resolves
# /etc/hosts and DNS by itself, so the image needs no libraries.
FROM scratch
# First, so every layer of a build carries it: scripts/docker-smoke finds by it the untagged
# layers an interrupted build leaves behind.
LABEL org.opencontainers.image.title="lockio"

# Host lookup order for glibc: /etc/hosts, then DNS (compose service names).
COPY docker/nsswitch.conf /etc/nsswitch.conf
# The data directory, owned by the user the node runs as. Compose mounts a named volume here;
# a new volume takes this directory's owner, so the node can write it without being root.
# (docker/data holds only an empty .keep, because git keeps no empty directory.)
COPY --chown=65532:65532 docker/data /data
COPY target/static/x86_64-unknown-linux-gnu/release/lockio /lockio

# An unprivileged uid (no /etc/passwd needed); lockio needs no capabilities.
USER 65532:65532
# The ports docker-compose.yml passes as --http and --raft.
EXPOSE 5000 4321
# `lockio serve` exits cleanly on SIGTERM, what `docker stop` sends.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/lockio"]
CMD ["--help"]
