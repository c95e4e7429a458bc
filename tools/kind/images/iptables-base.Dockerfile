# airside/debian-iptables with a backend-detecting iptables wrapper.
ARG BASE
FROM ${BASE}
COPY iptables-wrapper /usr/sbin/iptables-wrapper
RUN for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \
      ln -sf iptables-wrapper "/usr/sbin/$t"; done \
 && mkdir -p /tmp && chmod 1777 /tmp && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
