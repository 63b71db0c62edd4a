package dev.moecluster.helm;

import static dev.moecluster.helm.RenderedObjects.flag;
import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.PodTemplateSpec;
import io.fabric8.kubernetes.api.model.Probe;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServicePort;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.autoscaling.v2.HorizontalPodAutoscaler;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicy;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyIngressRule;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyPeer;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/** {@code helm template moe -n moe} with the chart's defaults: a small CPU cluster on the built-in model. */
class ChartDefaultValuesTest {
    static final String COORDINATOR = "moe-moe-cluster-coordinator";
    static final String WORKER = "moe-moe-cluster-worker";
    static final String ROUTER = "moe-moe-cluster-router";
    static final List<String> WORKLOADS = List.of(COORDINATOR, WORKER, ROUTER);

    private final RenderedObjects objects = RenderedObjects.parse(HelmChart.moeCluster().template());

    @Test
    void rendersTheExpectedKindsAndNames() {
        Map<String, List<String>> byKind = objects.all().stream().collect(Collectors.groupingBy(HasMetadata::getKind,
                Collectors.mapping(o -> o.getMetadata().getName(), Collectors.toList())));

        assertThat(byKind).containsOnlyKeys("StatefulSet", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy");
        assertThat(byKind.get("StatefulSet")).containsExactlyInAnyOrder(COORDINATOR, WORKER);
        assertThat(byKind.get("Deployment")).containsExactly(ROUTER);
        assertThat(byKind.get("Service")).containsExactlyInAnyOrder(COORDINATOR + "-headless", COORDINATOR, WORKER, ROUTER);
        assertThat(byKind.get("PodDisruptionBudget")).containsExactlyInAnyOrder(COORDINATOR, WORKER, ROUTER);
        assertThat(byKind.get("NetworkPolicy")).containsExactlyInAnyOrder(COORDINATOR, WORKER);
        assertThat(objects.all()).allSatisfy(o -> assertThat(o.getMetadata().getNamespace()).isEqualTo("moe"));
    }

    @Test
    void everyObjectCarriesTheStandardLabels() {
        assertThat(objects.all()).allSatisfy(o -> assertThat(o.getMetadata().getLabels())
                .as("labels of %s %s", o.getKind(), o.getMetadata().getName())
                .containsEntry("app.kubernetes.io/name", "moe-cluster")
                .containsEntry("app.kubernetes.io/instance", "moe")
                .containsEntry("app.kubernetes.io/version", "0.1.0")
                .containsEntry("app.kubernetes.io/part-of", "moe-cluster")
                .containsEntry("app.kubernetes.io/managed-by", "Helm")
                .containsEntry("helm.sh/chart", "moe-cluster-0.1.0")
                .containsKey("app.kubernetes.io/component"));
        for (String workload : WORKLOADS) {
            assertThat(objects.podTemplate(workload).getMetadata().getLabels())
                    .containsEntry("app.kubernetes.io/version", "0.1.0")
                    .containsEntry("helm.sh/chart", "moe-cluster-0.1.0");
        }
    }

    @Test
    void everySelectorPicksTheSameComponentsPods() {
        Map<String, Map<String, String>> podLabels = WORKLOADS.stream()
                .collect(Collectors.toMap(Function.identity(), w -> objects.podTemplate(w).getMetadata().getLabels()));
        Map<String, String> componentOf = Map.of(COORDINATOR, "coordinator", WORKER, "worker", ROUTER, "router");

        objects.all(StatefulSet.class).forEach(s -> assertSelects(s.getSpec().getSelector().getMatchLabels(),
                podLabels, s.getMetadata().getName()));
        objects.all(Deployment.class).forEach(d -> assertSelects(d.getSpec().getSelector().getMatchLabels(),
                podLabels, d.getMetadata().getName()));
        objects.all(PodDisruptionBudget.class).forEach(p -> assertSelects(p.getSpec().getSelector().getMatchLabels(),
                podLabels, p.getMetadata().getName()));
        for (Service service : objects.all(Service.class)) {
            String workload = service.getMetadata().getName().replace("-headless", "");
            assertSelects(service.getSpec().getSelector(), podLabels, workload);
        }
        podLabels.forEach((workload, labels) -> assertThat(labels)
                .containsEntry("app.kubernetes.io/component", componentOf.get(workload)));
        assertThat(objects.get(StatefulSet.class, COORDINATOR).getSpec().getServiceName()).isEqualTo(COORDINATOR + "-headless");
        assertThat(objects.get(StatefulSet.class, WORKER).getSpec().getServiceName()).isEqualTo(WORKER);
    }

    /** {@code selector} matches the pods of {@code workload} and of no other workload. */
    private static void assertSelects(Map<String, String> selector, Map<String, Map<String, String>> podLabels, String workload) {
        assertThat(selector).as("selector for %s", workload).isNotEmpty();
        podLabels.forEach((name, labels) -> assertThat(labels.entrySet().containsAll(selector.entrySet()))
                .as("selector %s for %s against the pods of %s", selector, workload, name)
                .isEqualTo(name.equals(workload)));
    }

    @Test
    void coordinatorsAreThreeHazelcastMembersFoundThroughAHeadlessService() {
        StatefulSet coordinators = objects.get(StatefulSet.class, COORDINATOR);
        assertThat(coordinators.getSpec().getReplicas()).isEqualTo(3);
        assertThat(coordinators.getSpec().getPodManagementPolicy()).isEqualTo("Parallel");

        Service headless = objects.get(Service.class, COORDINATOR + "-headless");
        assertThat(headless.getSpec().getClusterIP()).isEqualTo("None");
        assertThat(headless.getSpec().getPublishNotReadyAddresses()).isTrue();
        assertThat(ports(headless.getSpec().getPorts())).containsExactly(Map.entry("hazelcast", 5701));

        Service clients = objects.get(Service.class, COORDINATOR);
        assertThat(clients.getSpec().getType()).isEqualTo("ClusterIP");
        assertThat(clients.getSpec().getClusterIP()).isNull();
        assertThat(ports(clients.getSpec().getPorts()))
                .containsExactlyInAnyOrderEntriesOf(Map.of("control", 50070, "admin", 50071, "metrics", 9402));
    }

    @Test
    void routerAndWorkerServicesExposeGrpcAndMetrics() {
        Service router = objects.get(Service.class, ROUTER);
        assertThat(router.getSpec().getType()).isEqualTo("ClusterIP");
        // http: the OpenAI-compatible API the router serves on --http-port
        assertThat(ports(router.getSpec().getPorts()))
                .containsExactlyInAnyOrderEntriesOf(Map.of("grpc", 50051, "http", 8000, "metrics", 9400));
        assertThat(router.getSpec().getPorts()).allSatisfy(p -> assertThat(p.getTargetPort().getStrVal()).isEqualTo(p.getName()));
        assertThat(router.getSpec().getPorts()).filteredOn(p -> p.getName().equals("http"))
                .singleElement().satisfies(p -> assertThat(p.getAppProtocol()).isEqualTo("http"));

        Service workers = objects.get(Service.class, WORKER);
        assertThat(workers.getSpec().getClusterIP()).isEqualTo("None");
        assertThat(ports(workers.getSpec().getPorts())).containsExactlyInAnyOrderEntriesOf(Map.of("grpc", 50061, "metrics", 9401));
    }

    @Test
    void containersExposeTheirPortsByName() {
        assertThat(containerPorts(COORDINATOR))
                .containsExactlyInAnyOrderEntriesOf(Map.of("hazelcast", 5701, "control", 50070, "admin", 50071, "health", 50072,
                        "metrics", 9402));
        assertThat(containerPorts(WORKER))
                .containsExactlyInAnyOrderEntriesOf(Map.of("grpc", 50061, "health", 50062, "metrics", 9401));
        assertThat(containerPorts(ROUTER))
                .containsExactlyInAnyOrderEntriesOf(Map.of("grpc", 50051, "http", 8000, "health", 50052, "metrics", 9400));
        assertThat(flag(objects.container(ROUTER), "--http-port")).isEqualTo("8000");
    }

    @Test
    void probesAskGrpcHealthOnTheHealthPort() {
        for (String workload : WORKLOADS) {
            Container c = objects.container(workload);
            int health = containerPorts(workload).get("health");
            assertThat(flag(c, "--health-port")).isEqualTo(Integer.toString(health));
            assertGrpcProbe(c.getStartupProbe(), health, "liveness");
            assertGrpcProbe(c.getReadinessProbe(), health, "");
            assertGrpcProbe(c.getLivenessProbe(), health, "liveness");
            assertThat(flag(c, "--metrics-port")).isEqualTo(Integer.toString(containerPorts(workload).get("metrics")));
        }
    }

    private static void assertGrpcProbe(Probe probe, int port, String service) {
        assertThat(probe).isNotNull();
        assertThat(probe.getGrpc().getPort()).isEqualTo(port);
        assertThat(probe.getGrpc().getService()).isEqualTo(service);
        assertThat(probe.getHttpGet()).isNull();
        assertThat(probe.getTcpSocket()).isNull();
        assertThat(probe.getExec()).isNull();
    }

    @Test
    void coordinatorArgsJoinThroughKubernetesDns() {
        Container c = objects.container(COORDINATOR);
        assertThat(c.getArgs().getFirst()).isEqualTo("coordinator");
        assertThat(c.getCommand()).as("the image's entrypoint runs moe").isNullOrEmpty();
        assertThat(flag(c, "--kubernetes-service-dns")).isEqualTo(COORDINATOR + "-headless.moe.svc.cluster.local");
        assertThat(c.getArgs()).doesNotContain("--members");
        assertThat(flag(c, "--host")).isEqualTo("$(POD_IP)");
        assertThat(flag(c, "--port")).isEqualTo("5701");
        assertThat(flag(c, "--admin-port")).isEqualTo("50071");
        assertThat(flag(c, "--control-port")).isEqualTo("50070");
        assertThat(flag(c, "--expected-coordinators")).as("the majority is counted from the StatefulSet's replicas").isEqualTo("3");
        assertThat(flag(c, "--expected-workers")).isEqualTo("2");
        assertThat(flag(c, "--min-replicas")).isEqualTo("1");
        assertThat(flag(c, "--cluster-name")).isEqualTo("moe-moe-cluster");
        assertThat(flag(c, "--arch")).isEqualTo("mixtral");
        assertThat(c.getEnv()).anySatisfy(e -> {
            assertThat(e.getName()).isEqualTo("POD_IP");
            assertThat(e.getValueFrom().getFieldRef().getFieldPath()).isEqualTo("status.podIP");
        });
    }

    @Test
    void workersAndRoutersReachTheCoordinatorsThroughTheirService() {
        String coordinators = COORDINATOR + ":" + portOf(objects.get(Service.class, COORDINATOR), "control");
        for (String workload : List.of(WORKER, ROUTER)) {
            Container c = objects.container(workload);
            assertThat(flag(c, "--coordinators")).isEqualTo(coordinators);
            assertThat(c.getArgs()).as("not Hazelcast clients: no cluster to join").doesNotContain("--cluster-name");
            assertThat(flag(c, "--arch")).isEqualTo("mixtral");
            assertThat(c.getArgs()).doesNotContain("--model");
        }
        Container worker = objects.container(WORKER);
        assertThat(worker.getArgs().getFirst()).isEqualTo("worker");
        // a worker registers under its pod's stable DNS name through the headless Service; routers dial it
        assertThat(flag(worker, "--host")).isEqualTo("$(POD_IP)");
        assertThat(flag(worker, "--advertise")).isEqualTo("$(POD_NAME)." + WORKER + ".moe.svc.cluster.local");
        Service workerService = objects.get(Service.class, WORKER);
        assertThat(workerService.getSpec().getClusterIP()).isEqualTo("None");
        assertThat(workerService.getSpec().getPublishNotReadyAddresses()).isTrue();
        assertThat(objects.get(StatefulSet.class, WORKER).getSpec().getServiceName()).isEqualTo(WORKER);
        assertThat(flag(worker, "--id")).isEqualTo("$(POD_NAME)");
        assertThat(flag(worker, "--port")).isEqualTo("50061");
        assertThat(flag(worker, "--backend")).isEqualTo("cpu");
        assertThat(flag(worker, "--memory-budget")).isEqualTo("2GiB");
        assertThat(flag(worker, "--drain-timeout-s")).isEqualTo("120");

        Container router = objects.container(ROUTER);
        assertThat(router.getArgs().getFirst()).isEqualTo("router");
        assertThat(flag(router, "--host")).isEqualTo("0.0.0.0");
        assertThat(flag(router, "--port")).isEqualTo("50051");
        assertThat(flag(router, "--shutdown-grace-s")).isEqualTo("30");
        assertThat(router.getArgs()).doesNotContain("--auth-token-file");
    }

    @Test
    void cpuWorkersAskForNoGpuAndNoTlsIsWired() {
        assertThat(objects.container(WORKER).getResources().getLimits()).doesNotContainKey("nvidia.com/gpu");
        for (String workload : WORKLOADS) {
            assertThat(objects.container(workload).getArgs()).doesNotContain("--tls-cert", "--tls-key", "--tls-ca");
            assertThat(objects.podTemplate(workload).getSpec().getVolumes()).extracting("name").containsExactly("tmp");
        }
    }

    @Test
    void podsRunAsNonRootWithAReadOnlyRootAndAWritableTmp() {
        for (String workload : WORKLOADS) {
            PodTemplateSpec pod = objects.podTemplate(workload);
            assertThat(pod.getSpec().getSecurityContext().getRunAsNonRoot()).isTrue();
            assertThat(pod.getSpec().getSecurityContext().getRunAsUser()).isEqualTo(65532L);
            Container c = objects.container(workload);
            assertThat(c.getSecurityContext().getReadOnlyRootFilesystem()).isTrue();
            assertThat(c.getSecurityContext().getAllowPrivilegeEscalation()).isFalse();
            assertThat(c.getVolumeMounts()).anySatisfy(m -> {
                assertThat(m.getName()).isEqualTo("tmp");
                assertThat(m.getMountPath()).isEqualTo("/tmp");
            });
            assertThat(pod.getSpec().getVolumes()).anySatisfy(v -> {
                assertThat(v.getName()).isEqualTo("tmp");
                assertThat(v.getEmptyDir()).isNotNull();
            });
            assertThat(c.getImage()).isEqualTo("ghcr.io/moe-cluster/moe:0.1.0");
            assertThat(c.getResources().getRequests()).containsKeys("cpu", "memory");
        }
    }

    @Test
    void gracePeriodsOutlastTheDrainAndTheShutdown() {
        assertThat(objects.podTemplate(WORKER).getSpec().getTerminationGracePeriodSeconds()).isEqualTo(150L);
        assertThat(objects.podTemplate(ROUTER).getSpec().getTerminationGracePeriodSeconds()).isEqualTo(45L);
    }

    @Test
    void disruptionBudgetsLetOnePodOfEachComponentGo() {
        assertThat(objects.all(PodDisruptionBudget.class)).hasSize(3)
                .allSatisfy(p -> assertThat(p.getSpec().getMaxUnavailable().getIntVal()).isEqualTo(1));
    }

    @Test
    void onlyCoordinatorsReachTheHazelcastPortAndOnlyWorkersAndRoutersTheControlApi() {
        NetworkPolicy policy = objects.get(NetworkPolicy.class, COORDINATOR);
        assertThat(policy.getSpec().getPodSelector().getMatchLabels())
                .isEqualTo(objects.get(StatefulSet.class, COORDINATOR).getSpec().getSelector().getMatchLabels());
        assertThat(policy.getSpec().getPolicyTypes()).containsExactly("Ingress");

        List<NetworkPolicyIngressRule> hazelcastRules = policy.getSpec().getIngress().stream()
                .filter(r -> r.getPorts().stream().anyMatch(p -> p.getPort().getIntVal() == 5701)).toList();
        assertThat(hazelcastRules).singleElement().satisfies(rule -> {
            assertThat(rule.getPorts()).singleElement().satisfies(p -> {
                assertThat(p.getPort().getIntVal()).isEqualTo(5701);
                assertThat(p.getProtocol()).isEqualTo("TCP");
            });
            assertThat(rule.getFrom()).singleElement().satisfies(peer -> isPodsOf(peer, COORDINATOR));
        });
        List<NetworkPolicyIngressRule> controlRules = policy.getSpec().getIngress().stream()
                .filter(r -> r.getPorts().stream().anyMatch(p -> p.getPort().getIntVal() == 50070)).toList();
        assertThat(controlRules).singleElement().satisfies(rule -> {
            assertThat(rule.getPorts()).extracting(p -> p.getPort().getIntVal()).containsExactly(50070);
            assertThat(rule.getFrom()).hasSize(2);
            isPodsOf(rule.getFrom().get(0), WORKER);
            isPodsOf(rule.getFrom().get(1), ROUTER);
        });
        // the Admin API drains and rebalances: only the coordinators themselves reach it (moe admin via kubectl exec)
        List<NetworkPolicyIngressRule> adminRules = policy.getSpec().getIngress().stream()
                .filter(r -> r.getPorts().stream().anyMatch(p -> p.getPort().getIntVal() == 50071)).toList();
        assertThat(adminRules).singleElement().satisfies(rule -> {
            assertThat(rule.getPorts()).extracting(p -> p.getPort().getIntVal()).containsExactly(50071);
            assertThat(rule.getFrom()).singleElement().satisfies(peer -> {
                assertThat(peer.getPodSelector().getMatchLabels())
                        .isEqualTo(objects.get(StatefulSet.class, COORDINATOR).getSpec().getSelector().getMatchLabels());
                assertThat(peer.getNamespaceSelector()).as("same namespace only").isNull();
            });
        });
        // the last rule opens health (kubelet probes) and metrics to the cluster, never 5701 or the Admin API
        assertThat(policy.getSpec().getIngress())
                .filteredOn(r -> !hazelcastRules.contains(r) && !adminRules.contains(r) && !controlRules.contains(r))
                .singleElement().satisfies(r -> {
                    assertThat(r.getFrom()).isNullOrEmpty();
                    assertThat(r.getPorts()).extracting(p -> p.getPort().getIntVal()).containsExactlyInAnyOrder(50072, 9402);
                });
    }

    @Test
    void onlyTheReleasesRoutersReachTheWorkersDataPlane() {
        NetworkPolicy policy = objects.get(NetworkPolicy.class, WORKER);
        assertThat(policy.getSpec().getPodSelector().getMatchLabels())
                .isEqualTo(objects.get(StatefulSet.class, WORKER).getSpec().getSelector().getMatchLabels());
        assertThat(policy.getSpec().getPolicyTypes()).containsExactly("Ingress");
        List<NetworkPolicyIngressRule> grpcRules = policy.getSpec().getIngress().stream()
                .filter(r -> r.getPorts().stream().anyMatch(p -> p.getPort().getIntVal() == 50061)).toList();
        assertThat(grpcRules).singleElement().satisfies(rule -> {
            assertThat(rule.getPorts()).extracting(p -> p.getPort().getIntVal()).containsExactly(50061);
            assertThat(rule.getFrom()).singleElement().satisfies(peer -> {
                assertThat(peer.getPodSelector().getMatchLabels())
                        .isEqualTo(objects.get(Deployment.class, ROUTER).getSpec().getSelector().getMatchLabels());
                assertThat(peer.getNamespaceSelector()).as("same namespace only").isNull();
            });
        });
        // probes and scrapes still reach health and metrics, never the gRPC port
        assertThat(policy.getSpec().getIngress()).filteredOn(r -> !grpcRules.contains(r)).singleElement()
                .satisfies(r -> assertThat(r.getPorts()).extracting(p -> p.getPort().getIntVal())
                        .containsExactlyInAnyOrder(50062, 9401));
    }

    private void isPodsOf(NetworkPolicyPeer peer, String workload) {
        var selector = workload.equals(ROUTER) ? objects.get(Deployment.class, workload).getSpec().getSelector()
                : objects.get(StatefulSet.class, workload).getSpec().getSelector();
        assertThat(peer.getPodSelector().getMatchLabels()).isEqualTo(selector.getMatchLabels());
        assertThat(peer.getNamespaceSelector()).as("same namespace only").isNull();
        assertThat(peer.getIpBlock()).isNull();
    }

    @Test
    void optionalObjectsStayOffByDefault() {
        assertThat(objects.all(HorizontalPodAutoscaler.class)).isEmpty();
        assertThat(objects.all(GenericKubernetesResource.class)).isEmpty();
        assertThat(objects.get(Deployment.class, ROUTER).getSpec().getReplicas()).isEqualTo(2);
        assertThat(objects.get(StatefulSet.class, WORKER).getSpec().getReplicas()).isEqualTo(2);
    }

    static Map<String, Integer> ports(List<ServicePort> ports) {
        return ports.stream().collect(Collectors.toMap(ServicePort::getName, ServicePort::getPort));
    }

    private static int portOf(Service service, String name) {
        return ports(service.getSpec().getPorts()).get(name);
    }

    private Map<String, Integer> containerPorts(String workload) {
        return objects.container(workload).getPorts().stream()
                .collect(Collectors.toMap(ContainerPort::getName, ContainerPort::getContainerPort));
    }
}
