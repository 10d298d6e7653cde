# connscope image for the DaemonSet (deploy/daemonset.yaml). Debian packages only.
FROM debian:12-slim AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        make gcc clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libcjson-dev \
        libpcap-dev libssl-dev libcapstone-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make clean && make

FROM debian:12-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        libbpf1 libelf1 zlib1g libcjson1 libpcap0.8 libssl3 libcapstone4 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/connscope /usr/sbin/connscope
ENTRYPOINT ["/usr/sbin/connscope"]
CMD ["daemon", "-i", "30"]
