# A binary on airside's Debian iptables rootfs (kube-proxy, kindnetd, local-path).
ARG BASE
FROM ${BASE}
ARG BIN=empty
ARG DEST=/empty
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY ${BIN} ${DEST}
