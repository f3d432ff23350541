-- stg_run_metrics: the metrics a run reported, one column per known metric.
-- grain: one row per run (job_id) that reported at least one metric.
-- The API does not document metric keys; nested keys arrive flattened with dots
-- (`costs.total_usd`). Keys not named here stay in workflow_runs__metrics.

with metrics as (

    select
        job_id,
        metric,
        -- null when the reported value was not a number (it is then in value_text)
        value

    from {{dataset}}.workflow_runs__metrics

),

final as (

    select
        job_id,
        cast(max(value) filter (where metric = 'row_count') as bigint) as row_count,
        cast(max(value) filter (where metric = 'rows_in') as bigint) as rows_in,
        cast(max(value) filter (where metric = 'rows_out') as bigint) as rows_out,
        -- US dollars, as Sixtyfour reports them
        max(value) filter (where metric = 'costs.total_usd') as cost_usd,
        max(value) filter (where metric = 'costs.llm_usd') as llm_cost_usd,
        -- Sixtyfour credits, not money
        max(value) filter (where metric = 'credits_used') as credits_used,
        count(*) as metrics_reported

    from metrics
    group by job_id

)

select * from final
