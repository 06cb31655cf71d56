package dev.apikeyportal.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Queue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The sender against a local HTTP server that answers what each test scripts. */
class WebhookSenderTest {

  private static final String SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  private static final ObjectMapper MAPPER = new ObjectMapper();

  private record Received(Headers headers, byte[] body) {
    String header(String name) {
      return headers.getFirst(name);
    }

    List<String> names() throws IOException {
      List<String> names = new ArrayList<>();
      MAPPER.readTree(body).get("events").forEach(e -> names.add(e.get("name").asText()));
      return names;
    }
  }

  private HttpServer server;
  private final BlockingQueue<Received> received = new LinkedBlockingQueue<>();

  private record Answer(int status, long delayMillis) {}

  private final Queue<Answer> answers = new ConcurrentLinkedQueue<>(); // then 204 at once
  private WebhookSender sender;

  @BeforeEach
  void startServer() throws IOException {
    server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.createContext(
        "/events",
        exchange -> {
          received.add(
              new Received(exchange.getRequestHeaders(), exchange.getRequestBody().readAllBytes()));
          Answer answer = answers.poll();
          if (answer != null) {
            sleep(answer.delayMillis());
          }
          exchange.sendResponseHeaders(answer == null ? 204 : answer.status(), -1);
          exchange.close();
        });
    server.start();
  }

  @AfterEach
  void stop() {
    if (sender != null) {
      sender.close();
    }
    server.stop(0);
  }

  @Test
  void itDeliversASignedBatch() throws Exception {
    start(Map.of());

    sender.offer(named("one"));

    Received request = next();
    assertEquals("application/json", request.header("Content-Type"));
    assertEquals("apikey-portal-event-listener/1.0.0", request.header("User-Agent"));
    long timestamp = Long.parseLong(request.header("webhook-timestamp"));
    assertTrue(Math.abs(Instant.now().getEpochSecond() - timestamp) <= 5);
    String id = request.header("webhook-id");
    assertEquals(
        WebhookSignature.sign(WebhookSignature.keyOf(SECRET), id, timestamp, request.body()),
        request.header("webhook-signature"));
    JsonNode body = MAPPER.readTree(request.body());
    assertEquals("{\"events\":[{\"name\":\"one\"}]}", body.toString());
  }

  @Test
  void itSendsTheEventsAlreadyWaitingInBatchesOfBatchSize() throws Exception {
    sender = new WebhookSender(settings(Map.of("batch-size", "2")), Duration.ofMillis(10));
    for (String name : List.of("a", "b", "c", "d", "e")) {
      sender.offer(named(name));
    }

    sender.start();

    assertEquals(List.of("a", "b"), next().names());
    assertEquals(List.of("c", "d"), next().names());
    assertEquals(List.of("e"), next().names());
  }

  @Test
  void itRetriesAfterA503WithTheSameWebhookId() throws Exception {
    answers.add(new Answer(503, 0));
    start(Map.of());

    sender.offer(named("one"));

    Received first = next();
    Received second = next();
    assertEquals(first.header("webhook-id"), second.header("webhook-id"));
    assertEquals(List.of("one"), second.names());
    assertNull(received.poll(300, TimeUnit.MILLISECONDS), "delivered, so not sent again");
  }

  @Test
  void itRetriesAfter408And429AndATimeout() throws Exception {
    answers.addAll(List.of(new Answer(408, 0), new Answer(429, 0), new Answer(204, 1_000)));
    start(Map.of("timeout-ms", "300"));

    sender.offer(named("one"));

    String id = next().header("webhook-id");
    assertEquals(id, next().header("webhook-id"));
    assertEquals(id, next().header("webhook-id")); // answered after the timeout
    assertEquals(id, next().header("webhook-id"));
  }

  @Test
  void itDropsABatchAfterMaxAttempts() throws Exception {
    answers.addAll(List.of(new Answer(500, 0), new Answer(502, 0), new Answer(503, 0)));
    start(Map.of("max-attempts", "3"));

    sender.offer(named("lost"));
    String id = next().header("webhook-id");
    assertEquals(id, next().header("webhook-id"));
    assertEquals(id, next().header("webhook-id"));
    sender.offer(named("next"));

    Received after = next();
    assertNotEquals(id, after.header("webhook-id"));
    assertEquals(List.of("next"), after.names());
  }

  @Test
  void itRetriesWhileThePortalIsDownThenDelivers() throws Exception {
    int port = server.getAddress().getPort();
    server.stop(0);
    start(Map.of());
    sender.offer(named("one"));
    Thread.sleep(100); // the first attempt is refused

    startServerOn(port);

    assertEquals(List.of("one"), next().names());
  }

  @Test
  void itDoesNotRetryARefusal() throws Exception {
    answers.add(new Answer(401, 0));
    start(Map.of());

    sender.offer(named("refused"));
    String id = next().header("webhook-id");
    sender.offer(named("next"));

    Received after = next();
    assertNotEquals(id, after.header("webhook-id"));
    assertEquals(List.of("next"), after.names());
  }

  @Test
  void aFullQueueDropsNewEventsWithoutBlocking() throws Exception {
    sender = new WebhookSender(settings(Map.of("queue-size", "3")), Duration.ofMillis(10));

    long began = System.nanoTime();
    for (int i = 0; i < 10_000; i++) {
      sender.offer(named("e" + i));
    }
    Duration took = Duration.ofNanos(System.nanoTime() - began);
    sender.start();

    assertTrue(took.compareTo(Duration.ofSeconds(1)) < 0, "offer took " + took);
    assertEquals(List.of("e0", "e1", "e2"), next().names());
    assertNull(received.poll(300, TimeUnit.MILLISECONDS));
  }

  @Test
  void itBacksOffExponentiallyUpTo30Seconds() {
    sender = new WebhookSender(settings(Map.of()));

    assertEquals(Duration.ofSeconds(1), sender.retryDelay(1));
    assertEquals(Duration.ofSeconds(2), sender.retryDelay(2));
    assertEquals(Duration.ofSeconds(4), sender.retryDelay(3));
    assertEquals(Duration.ofSeconds(16), sender.retryDelay(5));
    assertEquals(Duration.ofSeconds(30), sender.retryDelay(6));
    assertEquals(Duration.ofSeconds(30), sender.retryDelay(60));
  }

  private void start(Map<String, String> options) {
    sender = new WebhookSender(settings(options), Duration.ofMillis(10));
    sender.start();
  }

  private void startServerOn(int port) throws IOException {
    HttpServer old = server;
    server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
    server.createContext(
        "/events",
        exchange -> {
          received.add(
              new Received(exchange.getRequestHeaders(), exchange.getRequestBody().readAllBytes()));
          exchange.sendResponseHeaders(204, -1);
          exchange.close();
        });
    server.start();
    old.stop(0);
  }

  private Settings settings(Map<String, String> given) {
    Map<String, String> options =
        new HashMap<>(
            Map.of(
                "url",
                "http://127.0.0.1:" + server.getAddress().getPort() + "/events",
                "secret",
                SECRET));
    options.putAll(given);
    return Settings.from(options::get);
  }

  private Received next() throws InterruptedException {
    Received request = received.poll(10, TimeUnit.SECONDS);
    assertNotNull(request, "no request within 10 s");
    return request;
  }

  private static JsonNode named(String name) {
    return JsonNodeFactory.instance.objectNode().put("name", name);
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
