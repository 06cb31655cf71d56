package dev.apikeyportal.keycloak;

import java.util.List;
import org.jboss.logging.Logger;
import org.keycloak.Config;
import org.keycloak.events.Event;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.EventListenerProviderFactory;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;

/**
 * The event listener {@code apikey-portal}: pushes the events of the API key portal's realm to the
 * portal as signed webhooks. Configured with Keycloak's SPI options, e.g. {@code
 * --spi-events-listener--apikey-portal--url=...}; see README.md.
 */
public final class ApiKeyPortalEventListenerFactory implements EventListenerProviderFactory {

  static final String ID = "apikey-portal";
  private static final Logger LOG = Logger.getLogger(ApiKeyPortalEventListenerFactory.class);

  /** What realms get when the listener is not configured: Keycloak still finds the provider. */
  private static final EventListenerProvider DISABLED =
      new EventListenerProvider() {
        @Override
        public void onEvent(Event event) {}

        @Override
        public void onEvent(AdminEvent event, boolean includeRepresentation) {}

        @Override
        public void close() {}
      };

  private Settings settings; // null when not configured: nothing is sent
  private volatile WebhookSender sender; // read by request threads in create()

  @Override
  public String getId() {
    return ID;
  }

  @Override
  public void init(Config.Scope config) {
    String url = config.get(Settings.URL);
    if (url == null || url.isBlank()) {
      LOG.warn(
          "apikey-portal: no url configured (spi-events-listener--apikey-portal--url); "
              + "no events will be sent to the portal");
      return;
    }
    try {
      settings = Settings.from(config::get);
    } catch (IllegalArgumentException e) {
      LOG.errorf("apikey-portal: %s; no events will be sent to the portal", e.getMessage());
    }
  }

  @Override
  public void postInit(KeycloakSessionFactory factory) {
    if (settings == null) {
      return;
    }
    sender = new WebhookSender(settings);
    sender.start();
    LOG.infof(
        "apikey-portal: sending events to %s (client prefix %s, queue %d, batches of up to %d, "
            + "%d attempts, timeout %d ms)",
        settings.destination(),
        settings.clientPrefix(),
        settings.queueSize(),
        settings.batchSize(),
        settings.maxAttempts(),
        settings.timeout().toMillis());
  }

  @Override
  public EventListenerProvider create(KeycloakSession session) {
    WebhookSender running = sender;
    return running == null
        ? DISABLED
        : new ApiKeyPortalEventListener(session, settings.clientPrefix(), running::offer);
  }

  @Override
  public List<ProviderConfigProperty> getConfigMetadata() {
    return Settings.metadata();
  }

  @Override
  public void close() {
    if (sender != null) {
      sender.close();
      sender = null;
    }
  }
}
