{#- Which orders are revenue: the one home of the rule (customer_360, daily_sales, product_performance).

    Counted: orders whose payment was approved, up to and after invoicing. Left out, with the reason:
    - pending (order-created, payment-pending, the waiting-for-*-authorization states, approve-payment,
      window-to-change-payment, waiting-for-seller-decision): not paid yet, and many never will be;
      waiting-ffmt-authorization too ("waiting for authorization to dispatch": a seller's order whose
      marketplace has not confirmed the payment yet);
    - payment-denied, cancel, canceled, order-create(ion)-error: no sale;
    - request-cancel, cancellation-requested: a cancellation is being decided (a refused one comes back
      as invoice-after-cancellation-deny, which counts);
    - replaced: the shopper bought again in a new order (VTEX does not link the two), which counts;
      counting both would count the sale twice;
    - any status VTEX adds later: unknown until someone decides (the orders_known_status test warns).
    VTEX's own billing counts every order that reached payment approval; this is the analytics rule that
    avoids counting a sale twice or counting money never received. -#}
{% macro revenue_statuses() -%}
    {{ return([
        "payment-approved", "window-to-cancel", "authorize-fulfillment", "waiting-for-fulfillment",
        "waiting-seller-handling", "ready-for-handling", "start-handling", "handling",
        "ready-for-invoicing", "invoice", "invoiced", "invoice-after-cancellation-deny",
    ]) }}
{%- endmacro %}

{% macro is_revenue(status) -%}
    coalesce({{ status }} in ('{{ revenue_statuses() | join("', '") }}'), false)
{%- endmacro %}
