package dev.apikeyportal.keycloak;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.jboss.logging.Logger;

/**
 * The one thread that talks to the portal: takes events from a bounded queue, POSTs them in signed
 * batches, retries a batch with backoff while the portal is unreachable or busy, and drops it when
 * retrying is hopeless or over. Delivery is at least once: a batch that reached the portal but
 * whose answer was lost is sent again with the same webhook-id.
 */
final class WebhookSender implements AutoCloseable {

  static final String USER_AGENT = "apikey-portal-event-listener/1.0.0";
  static final Duration FIRST_RETRY_DELAY = Duration.ofSeconds(1);
  static final Duration MAX_RETRY_DELAY = Duration.ofSeconds(30);
  private static final long DROP_WARNING_INTERVAL_NANOS = TimeUnit.MINUTES.toNanos(1);
  private static final Logger LOG = Logger.getLogger(WebhookSender.class);
  private static final ObjectMapper MAPPER = new ObjectMapper();

  private final Settings settings;
  private final Duration firstRetryDelay;
  private final BlockingQueue<JsonNode> queue;
  private final HttpClient http;
  private final Thread thread;
  private final AtomicLong droppedSinceWarning = new AtomicLong();
  private final AtomicLong nextDropWarning = new AtomicLong(System.nanoTime());
  private volatile boolean running = true;

  WebhookSender(Settings settings) {
    this(settings, FIRST_RETRY_DELAY);
  }

  /** {@code firstRetryDelay}: shorter in tests. */
  WebhookSender(Settings settings, Duration firstRetryDelay) {
    this.settings = settings;
    this.firstRetryDelay = firstRetryDelay;
    this.queue = new ArrayBlockingQueue<>(settings.queueSize());
    this.http =
        HttpClient.newBuilder()
            .connectTimeout(settings.timeout())
            .version(HttpClient.Version.HTTP_1_1)
            .followRedirects(HttpClient.Redirect.NEVER)
            .build();
    this.thread = new Thread(this::run, "apikey-portal-event-sender");
    this.thread.setDaemon(true);
  }

  void start() {
    thread.start();
  }

  /** Queue an event without waiting; when the queue is full the event is dropped and counted. */
  void offer(JsonNode event) {
    if (!queue.offer(event)) {
      droppedSinceWarning.incrementAndGet();
      warnOfDrops();
    }
  }

  /**
   * Stop sending; what is still queued or being retried is lost (the portal's polling catches up).
   */
  @Override
  public void close() {
    running = false;
    thread.interrupt();
    try {
      thread.join(TimeUnit.SECONDS.toMillis(5));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private void run() {
    while (running) {
      try {
        JsonNode first = queue.poll(10, TimeUnit.SECONDS);
        warnOfDrops();
        if (first == null) {
          continue;
        }
        List<JsonNode> batch = new ArrayList<>(settings.batchSize());
        batch.add(first);
        queue.drainTo(batch, settings.batchSize() - 1);
        deliver(batch);
      } catch (InterruptedException e) {
        return;
      } catch (RuntimeException e) {
        // One bad batch must not stop the thread that sends all the others.
        LOG.error("apikey-portal: unexpected failure while sending events", e);
      }
    }
  }

  /** Send one batch until it is delivered, refused, or out of attempts. */
  private void deliver(List<JsonNode> batch) throws InterruptedException {
    String id = UUID.randomUUID().toString(); // one per batch: the portal deduplicates on it
    byte[] body = bodyOf(batch);
    for (int attempt = 1; ; attempt++) {
      Outcome outcome = post(id, body);
      if (outcome.delivered()) {
        return;
      }
      if (!outcome.retryable()) {
        LOG.warnf(
            "apikey-portal: the portal refused a batch (%s); dropped %d events",
            outcome.description(), batch.size());
        return;
      }
      if (attempt >= settings.maxAttempts()) {
        LOG.warnf(
            "apikey-portal: no delivery after %d attempts (last: %s); dropped %d events",
            attempt, outcome.description(), batch.size());
        return;
      }
      LOG.debugf("apikey-portal: attempt %d failed (%s); retrying", attempt, outcome.description());
      Thread.sleep(retryDelay(attempt).toMillis());
    }
  }

  /** 1 s, 2 s, 4 s, … (from the first delay), at most 30 s. */
  Duration retryDelay(int failedAttempts) {
    long factor = 1L << Math.min(failedAttempts - 1, 20);
    Duration delay = firstRetryDelay.multipliedBy(factor);
    return delay.compareTo(MAX_RETRY_DELAY) > 0 ? MAX_RETRY_DELAY : delay;
  }

  private Outcome post(String id, byte[] body) throws InterruptedException {
    long timestamp = Instant.now().getEpochSecond();
    HttpRequest request =
        HttpRequest.newBuilder(settings.url())
            .timeout(settings.timeout())
            .header("Content-Type", "application/json")
            .header("User-Agent", USER_AGENT)
            .header("webhook-id", id)
            .header("webhook-timestamp", Long.toString(timestamp))
            .header(
                "webhook-signature",
                WebhookSignature.sign(settings.signingKey(), id, timestamp, body))
            .POST(HttpRequest.BodyPublishers.ofByteArray(body))
            .build();
    try {
      int status = http.send(request, HttpResponse.BodyHandlers.discarding()).statusCode();
      return Outcome.ofStatus(status);
    } catch (IOException e) { // connection refused or reset, timeouts (HttpTimeoutException)
      return Outcome.retry(e.getClass().getSimpleName());
    }
  }

  private static byte[] bodyOf(List<JsonNode> batch) {
    try {
      return MAPPER.writeValueAsBytes(Map.of("events", batch));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("events are plain JSON trees", e);
    }
  }

  private void warnOfDrops() {
    long due = nextDropWarning.get();
    long now = System.nanoTime();
    if (droppedSinceWarning.get() > 0
        && now - due >= 0
        && nextDropWarning.compareAndSet(due, now + DROP_WARNING_INTERVAL_NANOS)) {
      LOG.warnf(
          "apikey-portal: the queue (%d events) is full; dropped %d new events since the last warning",
          settings.queueSize(), droppedSinceWarning.getAndSet(0));
    }
  }

  private record Outcome(boolean delivered, boolean retryable, String description) {

    static final Outcome DELIVERED = new Outcome(true, false, "delivered");

    static Outcome retry(String description) {
      return new Outcome(false, true, description);
    }

    static Outcome ofStatus(int status) {
      if (status >= 200 && status < 300) {
        return DELIVERED;
      }
      boolean retryable = status == 408 || status == 429 || status >= 500;
      return new Outcome(false, retryable, "HTTP " + status);
    }
  }
}
