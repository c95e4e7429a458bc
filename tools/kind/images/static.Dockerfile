# A single static binary on an empty filesystem (kube-apiserver, etcd, ...).
FROM scratch
ARG BIN
ARG DEST
ENV PATH=/usr/local/bin:/usr/bin:/bin
COPY ${BIN} ${DEST}
