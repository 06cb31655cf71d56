package dev.apikeyportal.keycloak;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.jboss.logging.Logger;
import org.keycloak.events.Event;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.models.AbstractKeycloakTransaction;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakTransactionManager;

/**
 * One Keycloak session's listener: keeps the events the portal hears about until the session's
 * transaction ends, then hands them to the sender's queue. It never sends, waits or throws on the
 * request's thread.
 */
final class ApiKeyPortalEventListener implements EventListenerProvider {

  private static final Logger LOG = Logger.getLogger(ApiKeyPortalEventListener.class);

  private final KeycloakSession session;
  private final String clientPrefix;
  private final Consumer<JsonNode> queue;
  private AfterCompletion pending;

  ApiKeyPortalEventListener(
      KeycloakSession session, String clientPrefix, Consumer<JsonNode> queue) {
    this.session = session;
    this.clientPrefix = clientPrefix;
    this.queue = queue;
  }

  @Override
  public void onEvent(Event event) {
    try {
      if (PortalEvents.isForwarded(event, clientPrefix)) {
        // Converted now: Keycloak reuses the Event object of a builder for later events.
        hold(PortalEvents.toJson(event), PortalEvents.isAttempt(event));
      }
    } catch (RuntimeException e) {
      LOG.warn("apikey-portal: could not take an event; it is not sent", e);
    }
  }

  @Override
  public void onEvent(AdminEvent event, boolean includeRepresentation) {
    try {
      if (PortalEvents.isForwarded(event)) {
        hold(PortalEvents.toJson(event, includeRepresentation), false);
      }
    } catch (RuntimeException e) {
      LOG.warn("apikey-portal: could not take an admin event; it is not sent", e);
    }
  }

  @Override
  public void close() {}

  private void hold(JsonNode event, boolean attempt) {
    KeycloakTransactionManager transactions = session.getTransactionManager();
    if (!transactions.isActive()) {
      queue.accept(event); // no transaction to wait for
      return;
    }
    if (pending == null || !pending.isActive()) {
      pending = new AfterCompletion(queue);
      transactions.enlistAfterCompletion(pending); // begun here, as the manager is active
    }
    pending.add(event, attempt);
  }

  /**
   * Queues a session's events after its transaction: all of them on commit; on rollback only failed
   * attempts, never a change that did not happen. (Keycloak's EventListenerTransaction drops
   * everything on rollback.)
   */
  static final class AfterCompletion extends AbstractKeycloakTransaction {

    private record Held(JsonNode event, boolean attempt) {}

    private final Consumer<JsonNode> queue;
    private final List<Held> held = new ArrayList<>();

    AfterCompletion(Consumer<JsonNode> queue) {
      this.queue = queue;
    }

    void add(JsonNode event, boolean attempt) {
      held.add(new Held(event, attempt));
    }

    @Override
    protected void commitImpl() {
      forward(false);
    }

    @Override
    protected void rollbackImpl() {
      forward(true);
    }

    private void forward(boolean attemptsOnly) {
      try {
        int queued = 0;
        for (Held h : held) {
          if (h.attempt() || !attemptsOnly) {
            queue.accept(h.event());
            queued++;
          }
        }
        LOG.debugf(
            "apikey-portal: transaction %s, queued %d of %d events",
            attemptsOnly ? "rolled back" : "committed", queued, held.size());
      } catch (RuntimeException e) {
        LOG.warn("apikey-portal: could not queue events", e);
      } finally {
        held.clear();
      }
    }
  }
}
