using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>The stack operations themselves: create, update, delete, and their rollbacks and cleanups.</summary>
internal sealed partial class StackEngine
{
    private const string UserInitiated = "User Initiated";

    // ---- create -------------------------------------------------------------------------------------------------------

    /// <summary>Creates every resource of the stack's (processed) template; rolls back on the first failure.</summary>
    public async Task CreateRunAsync(StackRun run)
    {
        run.SetStatus("CREATE_IN_PROGRESS", UserInitiated);
        var (template, intrinsics) = Live(run, run.Stack.ProcessedTemplate, run.Stack.Parameters);
        var active = template.ActiveResources(intrinsics);
        var dependencies = StackTemplate.Dependencies(active, intrinsics);
        var byId = active.ToDictionary(static r => r.LogicalId, StringComparer.Ordinal);
        var failed = await RunGraphAsync(active.Select(static r => r.LogicalId).ToList(), dependencies,
            id => CreateResourceAsync(run, byId[id], dependencies[id], intrinsics, "CREATE"), stopOnFailure: true);
        string? reason = failed.Count > 0 ? $"The following resource(s) failed to create: [{string.Join(", ", failed)}]. " : null;
        if (reason is null)
        {
            reason = Outputs(run, template, intrinsics);
        }
        if (reason is null)
        {
            run.SetStatus("CREATE_COMPLETE", null);
            return;
        }
        if (run.Stack.DisableRollback)
        {
            run.SetStatus("CREATE_FAILED", reason);
            return;
        }
        await CreateFailedAsync(run, reason + "Rollback requested by user.");
    }

    /// <summary>A failed (or interrupted) create: every resource made so far is deleted; ROLLBACK_COMPLETE.</summary>
    public async Task CreateFailedAsync(StackRun run, string reason)
    {
        run.SetStatus("ROLLBACK_IN_PROGRESS", reason);
        var failed = await DeleteResourcesAsync(run, run.Resources(), retain: static r => r.DeletionPolicy is "Retain");
        _store.SetExports(run.Stack.StackId, []);
        run.SaveStack(run.Stack with { Outputs = [] });
        run.SetStatus(failed.Count == 0 ? "ROLLBACK_COMPLETE" : "ROLLBACK_FAILED",
            failed.Count == 0 ? null : $"The following resource(s) failed to delete: [{string.Join(", ", failed)}]. ");
    }

    /// <summary>Creates one resource; false (with its failure reported) when the service refused.</summary>
    private async Task<bool> CreateResourceAsync(StackRun run, ResourceDefinition definition, List<string> dependencies, Intrinsics intrinsics, string phase,
        ResourceRecord? replacing = null, bool duringUpdate = false)
    {
        // How an update's rollback undoes this: a new resource is deleted, a replacement gives way to the old one.
        var change = replacing is not null ? "replaced" : duringUpdate ? "created" : null;
        var provider = _providers[definition.Type];
        var inProgress = phase == "CREATE" ? "CREATE_IN_PROGRESS" : "UPDATE_IN_PROGRESS";
        JsonObject properties;
        try
        {
            properties = intrinsics.Resolve(definition.Properties) as JsonObject ?? [];
        }
        catch (CloudFormationException e)
        {
            run.Event(definition.LogicalId, null, definition.Type, inProgress, null, null);
            Fail(run, new ResourceRecord
            {
                LogicalId = definition.LogicalId, Type = definition.Type, Status = inProgress, UpdatedAt = Now, Dependencies = dependencies,
                DeletionPolicy = definition.DeletionPolicy, Change = change, Previous = replacing?.Snapshot(),
                PhysicalId = null,
            }, phase == "CREATE" ? "CREATE_FAILED" : "UPDATE_FAILED", e.Message);
            return false;
        }
        var suffix = ProvisionRequest.NewSuffix();
        var request = run.Request(definition.LogicalId, properties, null, suffix);
        var planned = provider.PlannedPhysicalId(request);
        var record = new ResourceRecord
        {
            LogicalId = definition.LogicalId,
            Type = definition.Type,
            PhysicalId = planned,
            Status = inProgress,
            UpdatedAt = Now,
            Properties = Json(properties),
            Metadata = definition.Metadata?.ToJsonString(),
            DeletionPolicy = definition.DeletionPolicy,
            UpdateReplacePolicy = definition.UpdateReplacePolicy,
            Dependencies = dependencies,
            Change = change,
            Previous = replacing?.Snapshot(),
        };
        // Written before the call: an interrupted create is found, and undone, at the next start.
        run.Save(record);
        if (replacing is null)
        {
            run.Event(definition.LogicalId, null, definition.Type, inProgress, null, Json(properties));
        }
        else
        {
            run.Event(definition.LogicalId, replacing.PhysicalId, definition.Type, inProgress, "Requested update requires the creation of a new physical resource; hence creating one.", Json(properties));
        }
        ProvisionResult result;
        try
        {
            result = await provider.CreateAsync(request, Stopping);
        }
        catch (Exception e) when (e is ServiceException or CloudFormationException or HttpRequestException)
        {
            // A name that was taken is someone else's resource: never delete it in the rollback.
            var keep = e is ServiceException { HandlerErrorCode: "AlreadyExists" } ? null : planned;
            Fail(run, record with { PhysicalId = keep }, phase == "CREATE" ? "CREATE_FAILED" : "UPDATE_FAILED", HandlerMessage(e));
            return false;
        }
        record = record with { PhysicalId = result.PhysicalId, Attributes = Json(result.Attributes), UpdatedAt = Now };
        run.Save(record);
        run.Event(definition.LogicalId, result.PhysicalId, definition.Type, inProgress, "Resource creation Initiated", Json(properties));
        var complete = phase == "CREATE" ? "CREATE_COMPLETE" : "UPDATE_COMPLETE";
        run.Save(record with { Status = complete, UpdatedAt = Now });
        run.Event(definition.LogicalId, result.PhysicalId, definition.Type, complete, null, Json(properties));
        return true;
    }

    private void Fail(StackRun run, ResourceRecord record, string status, string reason)
    {
        run.Save(record with { Status = status, StatusReason = reason, UpdatedAt = Now });
        run.Event(record.LogicalId, record.PhysicalId, record.Type, status, reason, record.Properties);
        LogResourceFailed(run.Stack.StackName, record.LogicalId, record.Type, status, reason);
    }

    /// <summary>CloudFormation's wording for a handler's failure, with the service's own message.</summary>
    internal static string HandlerMessage(Exception e) => e switch
    {
        ServiceException s => $"Resource handler returned message: \"{s.Message}\" (RequestToken: {Guid.NewGuid()}, HandlerErrorCode: {s.HandlerErrorCode})",
        CloudFormationException c => c.Message,
        _ => $"Resource handler returned message: \"{e.Message}\" (RequestToken: {Guid.NewGuid()}, HandlerErrorCode: ServiceInternalError)",
    };

    // ---- update -------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Moves the stack from its current template to <paramref name="prepared"/>: new resources created, changed ones
    /// updated in place or replaced, removed ones (and replaced ones' old physical resources) deleted in the cleanup
    /// phase once everything else succeeded. A failure rolls everything back.
    /// </summary>
    public async Task UpdateRunAsync(StackRun run, PreparedTemplate prepared, ChangeSetRecord? changeSet, StackRequest request)
    {
        var before = run.Stack;
        run.SaveStack(before with
        {
            TemplateBody = prepared.Body,
            ProcessedTemplate = Json(prepared.Processed),
            Parameters = prepared.Parameters,
            Description = prepared.Template.Description,
            Imports = prepared.Imports,
            Capabilities = request.Capabilities,
            Tags = request.Tags ?? before.Tags,
            NotificationArns = request.NotificationArns,
            RoleArn = request.RoleArn ?? before.RoleArn,
            DisableRollback = request.DisableRollback,
            ChangeSetId = changeSet?.ChangeSetId,
            UpdatedAt = Now,
            Operation = new StackOperation
            {
                Kind = "UPDATE",
                PreviousTemplateBody = before.TemplateBody,
                PreviousProcessedTemplate = before.ProcessedTemplate,
                PreviousParameters = before.Parameters,
                PreviousOutputs = before.Outputs,
                PreviousDescription = before.Description,
            },
        });
        run.SetStatus("UPDATE_IN_PROGRESS", UserInitiated);
        var (template, intrinsics) = Live(run, run.Stack.ProcessedTemplate, run.Stack.Parameters);
        var active = template.ActiveResources(intrinsics);
        var dependencies = StackTemplate.Dependencies(active, intrinsics);
        var byId = active.ToDictionary(static r => r.LogicalId, StringComparer.Ordinal);
        var failed = await RunGraphAsync(active.Select(static r => r.LogicalId).ToList(), dependencies,
            id => UpdateResourceAsync(run, byId[id], dependencies[id], intrinsics), stopOnFailure: true);
        string? reason = failed.Count > 0 ? $"The following resource(s) failed to update: [{string.Join(", ", failed)}]. " : Outputs(run, template, intrinsics);
        if (reason is not null)
        {
            await UpdateRollbackAsync(run, reason);
            return;
        }
        await UpdateCleanupAsync(run);
    }

    private async Task<bool> UpdateResourceAsync(StackRun run, ResourceDefinition definition, List<string> dependencies, Intrinsics intrinsics)
    {
        var existing = run.Resource(definition.LogicalId);
        if (existing?.PhysicalId is null)
        {
            return await CreateResourceAsync(run, definition, dependencies, intrinsics, "CREATE", duringUpdate: true);
        }
        var provider = _providers[definition.Type];
        JsonObject properties;
        try
        {
            properties = intrinsics.Resolve(definition.Properties) as JsonObject ?? [];
        }
        catch (CloudFormationException e)
        {
            run.Event(definition.LogicalId, existing.PhysicalId, definition.Type, "UPDATE_IN_PROGRESS", null, null);
            Fail(run, existing, "UPDATE_FAILED", e.Message);
            return false;
        }
        var before = Object(existing.Properties);
        if (existing.Type == definition.Type && JsonNode.DeepEquals(before, properties))
        {
            // Unchanged: nothing is called and nothing reported, but its settings follow the template.
            if (existing.DeletionPolicy != definition.DeletionPolicy || !existing.Dependencies.SequenceEqual(dependencies))
            {
                run.Save(existing with { DeletionPolicy = definition.DeletionPolicy, UpdateReplacePolicy = definition.UpdateReplacePolicy, Dependencies = dependencies });
            }
            return true;
        }
        if (existing.Type != definition.Type || provider.RequiresReplacement(before, properties))
        {
            if (provider.NameProperty is { } nameProperty && properties[nameProperty] is not null && JsonNode.DeepEquals(before[nameProperty], properties[nameProperty]))
            {
                run.Event(definition.LogicalId, existing.PhysicalId, definition.Type, "UPDATE_IN_PROGRESS", null, Json(properties));
                Fail(run, existing, "UPDATE_FAILED",
                    $"CloudFormation cannot update a stack when a custom-named resource requires replacing. Rename {existing.PhysicalId} and update the stack again.");
                return false;
            }
            return await CreateResourceAsync(run, definition, dependencies, intrinsics, "UPDATE", replacing: existing);
        }
        var record = existing with
        {
            Status = "UPDATE_IN_PROGRESS",
            StatusReason = null,
            UpdatedAt = Now,
            Change = existing.Change ?? "updated",
            Previous = existing.Previous ?? existing.Snapshot(),
            DeletionPolicy = definition.DeletionPolicy,
            UpdateReplacePolicy = definition.UpdateReplacePolicy,
            Dependencies = dependencies,
        };
        run.Save(record);
        run.Event(definition.LogicalId, existing.PhysicalId, definition.Type, "UPDATE_IN_PROGRESS", null, Json(properties));
        ProvisionResult result;
        try
        {
            // An alias with a CodeDeploy UpdatePolicy (SAM's DeploymentPreference) moves to its new version gradually.
            if (definition.Type == "AWS::Lambda::Alias" && definition.UpdatePolicy is not null
                && await ShiftTrafficAsync(run, definition, existing, before, properties, intrinsics) is { } shiftFailure)
            {
                Fail(run, record, "UPDATE_FAILED", shiftFailure);
                return false;
            }
            result = await provider.UpdateAsync(run.Request(definition.LogicalId, properties, existing.PhysicalId, ProvisionRequest.NewSuffix(), before,
                Object(existing.Attributes)), Stopping);
            if (definition.Type == "AWS::Lambda::Alias" && definition.UpdatePolicy is not null && await AfterTrafficAsync(definition, intrinsics) is { } afterFailure)
            {
                Fail(run, record with { Properties = Json(properties) }, "UPDATE_FAILED", afterFailure);
                return false;
            }
        }
        catch (Exception e) when (e is ServiceException or CloudFormationException or HttpRequestException)
        {
            Fail(run, record, "UPDATE_FAILED", HandlerMessage(e));
            return false;
        }
        run.Save(record with { Status = "UPDATE_COMPLETE", Properties = Json(properties), Attributes = Json(result.Attributes), PhysicalId = result.PhysicalId, UpdatedAt = Now });
        run.Event(definition.LogicalId, result.PhysicalId, definition.Type, "UPDATE_COMPLETE", null, Json(properties));
        return true;
    }

    /// <summary>After a successful update: old physical resources and removed resources deleted; UPDATE_COMPLETE.</summary>
    public async Task UpdateCleanupAsync(StackRun run)
    {
        run.SetStatus("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", null);
        var (template, intrinsics) = Live(run, run.Stack.ProcessedTemplate, run.Stack.Parameters);
        var active = template.ActiveResources(intrinsics).Select(static r => r.LogicalId).ToHashSet(StringComparer.Ordinal);
        var garbage = new List<ResourceRecord>();
        foreach (var record in run.Resources())
        {
            if (!active.Contains(record.LogicalId))
            {
                garbage.Add(record);
            }
            else if (record is { Change: "replaced", Previous: { } old })
            {
                // The old physical resource goes; the record stays with the new one.
                garbage.Add(FromSnapshot(old) with { LogicalId = "\u0000" + record.LogicalId });
            }
        }
        garbage.AddRange((run.Stack.Operation?.Garbage ?? []).Select(FromSnapshot));
        await DeleteResourcesAsync(run, garbage, retain: static r => r.DeletionPolicy is "Retain" or "RetainExceptOnCreate", cleanup: true);
        foreach (var record in run.Resources().Where(static r => r.Change is not null || r.Previous is not null))
        {
            run.Save(record with { Change = null, Previous = null });
        }
        run.SaveStack(run.Stack with { Operation = null });
        run.SetStatus("UPDATE_COMPLETE", null);
    }

    /// <summary>A failed (or interrupted) update: every changed resource back as it was, then the new ones deleted.</summary>
    public async Task UpdateRollbackAsync(StackRun run, string reason)
    {
        run.SetStatus("UPDATE_ROLLBACK_IN_PROGRESS", reason);
        var operation = run.Stack.Operation ?? new StackOperation { Kind = "UPDATE", PreviousProcessedTemplate = run.Stack.ProcessedTemplate, PreviousTemplateBody = run.Stack.TemplateBody };
        run.SaveStack(run.Stack with
        {
            TemplateBody = operation.PreviousTemplateBody,
            ProcessedTemplate = operation.PreviousProcessedTemplate,
            Parameters = operation.PreviousParameters.Count > 0 ? operation.PreviousParameters : run.Stack.Parameters,
            Description = operation.PreviousDescription,
        });
        var touched = run.Resources().Where(static r => r.Change is not null).ToList();
        // New physical resources are remembered for the cleanup before their records change.
        var garbage = new List<ResourceSnapshot>(operation.Garbage);
        foreach (var record in touched.Where(static r => r.Change is "created" or "replaced" && r.PhysicalId is not null))
        {
            garbage.Add(record.Snapshot());
        }
        run.SaveStack(run.Stack with { Operation = operation with { Garbage = garbage } });
        var byId = touched.ToDictionary(static r => r.LogicalId, StringComparer.Ordinal);
        var order = touched.Select(static r => r.LogicalId).ToList();
        var dependencies = touched.ToDictionary(static r => r.LogicalId, r => (r.Previous?.Dependencies ?? r.Dependencies).Where(byId.ContainsKey).ToList(), StringComparer.Ordinal);
        var failed = await RunGraphAsync(order, dependencies, async id =>
        {
            var record = byId[id];
            switch (record.Change)
            {
                case "created":
                    run.Remove(id);
                    return true;
                case "replaced":
                    {
                        var old = record.Previous!;
                        run.Event(id, old.PhysicalId, old.Type, "UPDATE_IN_PROGRESS", null, old.Properties);
                        run.Save(FromSnapshot(old) with { Status = "UPDATE_COMPLETE", UpdatedAt = Now, Metadata = record.Metadata });
                        run.Event(id, old.PhysicalId, old.Type, "UPDATE_COMPLETE", null, old.Properties);
                        return true;
                    }
                default:
                    {
                        var old = record.Previous!;
                        run.Event(id, old.PhysicalId, old.Type, "UPDATE_IN_PROGRESS", null, old.Properties);
                        try
                        {
                            await _providers[old.Type].UpdateAsync(run.Request(id, Object(old.Properties), old.PhysicalId, ProvisionRequest.NewSuffix(),
                                Object(record.Properties), Object(record.Attributes)), Stopping);
                        }
                        catch (Exception e) when (e is ServiceException or CloudFormationException or HttpRequestException)
                        {
                            Fail(run, record, "UPDATE_FAILED", HandlerMessage(e));
                            return false;
                        }
                        run.Save(FromSnapshot(old) with { Status = "UPDATE_COMPLETE", UpdatedAt = Now, Metadata = record.Metadata });
                        run.Event(id, old.PhysicalId, old.Type, "UPDATE_COMPLETE", null, old.Properties);
                        return true;
                    }
            }
        }, stopOnFailure: false);
        if (failed.Count > 0)
        {
            run.SetStatus("UPDATE_ROLLBACK_FAILED", $"The following resource(s) failed to update: [{string.Join(", ", failed)}]. ");
            return;
        }
        run.SaveStack(run.Stack with { Outputs = operation.PreviousOutputs });
        _store.SetExports(run.Stack.StackId, operation.PreviousOutputs.Where(static o => o.ExportName is not null).Select(static o => (o.ExportName!, o.Value)));
        await UpdateRollbackCleanupAsync(run);
    }

    public async Task UpdateRollbackCleanupAsync(StackRun run)
    {
        run.SetStatus("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", null);
        var garbage = (run.Stack.Operation?.Garbage ?? []).Select(FromSnapshot).ToList();
        await DeleteResourcesAsync(run, garbage, retain: static r => r.DeletionPolicy is "Retain", cleanup: true);
        run.SaveStack(run.Stack with { Operation = null });
        run.SetStatus("UPDATE_ROLLBACK_COMPLETE", null);
    }

    private static ResourceRecord FromSnapshot(ResourceSnapshot snapshot) => new()
    {
        LogicalId = snapshot.LogicalId,
        Type = snapshot.Type,
        PhysicalId = snapshot.PhysicalId,
        Status = "UPDATE_COMPLETE",
        UpdatedAt = DateTimeOffset.MinValue,
        Properties = snapshot.Properties,
        Attributes = snapshot.Attributes,
        DeletionPolicy = snapshot.DeletionPolicy,
        Dependencies = snapshot.Dependencies,
    };

    // ---- delete -------------------------------------------------------------------------------------------------------

    /// <summary>Deletes every resource of the stack (those with DeletionPolicy Retain are kept); DELETE_COMPLETE.</summary>
    public async Task DeleteRunAsync(StackRun run)
    {
        run.SetStatus("DELETE_IN_PROGRESS", UserInitiated);
        var exports = _store.Exports().Where(e => e.StackId == run.Stack.StackId).Select(static e => e.Name).ToHashSet(StringComparer.Ordinal);
        var importer = _store.AllStacks().FirstOrDefault(s => s.DeletedAt is null && s.StackId != run.Stack.StackId && s.Imports.Any(exports.Contains));
        if (importer is not null)
        {
            var name = importer.Imports.First(exports.Contains);
            run.SetStatus("DELETE_FAILED", $"Export {name} cannot be deleted as it is in use by {importer.StackName}");
            return;
        }
        var resources = run.Resources();
        resources.AddRange((run.Stack.Operation?.Garbage ?? []).Select(FromSnapshot).Select(static r => r with { LogicalId = "\u0000" + r.LogicalId }));
        var failed = await DeleteResourcesAsync(run, resources, retain: static r => r.DeletionPolicy is "Retain" or "RetainExceptOnCreate");
        if (failed.Count > 0)
        {
            run.SetStatus("DELETE_FAILED", $"The following resource(s) failed to delete: [{string.Join(", ", failed)}]. ");
            return;
        }
        _store.SetExports(run.Stack.StackId, []);
        _store.DeleteChangeSets(run.Stack.StackId);
        run.SaveStack(run.Stack with { Operation = null, DeletedAt = Now });
        run.SetStatus("DELETE_COMPLETE", null);
    }

    /// <summary>
    /// Deletes <paramref name="resources"/>, each after every resource that depends on it; a resource whose logical id
    /// starts with NUL is an old physical resource (a replaced one's), whose record stays. Returns the ones that failed.
    /// </summary>
    private async Task<List<string>> DeleteResourcesAsync(StackRun run, List<ResourceRecord> resources, Func<ResourceRecord, bool> retain, bool cleanup = false)
    {
        var byId = new Dictionary<string, ResourceRecord>(StringComparer.Ordinal);
        foreach (var resource in resources)
        {
            byId.TryAdd(resource.LogicalId, resource);
        }
        // Reverse edges: a resource waits for those that depend on it.
        var waitsFor = byId.Keys.ToDictionary(static id => id, static _ => new List<string>(), StringComparer.Ordinal);
        foreach (var (id, resource) in byId)
        {
            foreach (var dependency in resource.Dependencies)
            {
                if (waitsFor.TryGetValue(dependency, out var list))
                {
                    list.Add(id);
                }
            }
        }
        return await RunGraphAsync([.. byId.Keys], waitsFor, async id =>
        {
            var resource = byId[id];
            var old = id.StartsWith('\u0000');
            var logicalId = old ? id[1..] : id;
            void Forget()
            {
                if (old)
                {
                    var current = run.Resource(logicalId);
                    if (current is not null && current.Previous?.PhysicalId == resource.PhysicalId)
                    {
                        run.Save(current with { Previous = null, Change = null });
                    }
                    var operation = run.Stack.Operation;
                    if (operation is not null && operation.Garbage.Any(g => g.PhysicalId == resource.PhysicalId && g.LogicalId == logicalId))
                    {
                        run.SaveStack(run.Stack with { Operation = operation with { Garbage = operation.Garbage.Where(g => !(g.PhysicalId == resource.PhysicalId && g.LogicalId == logicalId)).ToList() } });
                    }
                }
                else if (cleanup && run.Stack.Operation?.Garbage.FirstOrDefault(g => g.LogicalId == logicalId && g.PhysicalId == resource.PhysicalId) is { } garbage)
                {
                    run.SaveStack(run.Stack with { Operation = run.Stack.Operation with { Garbage = run.Stack.Operation.Garbage.Where(g => g != garbage).ToList() } });
                    if (run.Resource(logicalId) is { } current && current.PhysicalId == resource.PhysicalId)
                    {
                        run.Remove(logicalId);
                    }
                }
                else
                {
                    run.Remove(logicalId);
                }
            }
            if (resource.PhysicalId is null)
            {
                run.Event(logicalId, null, resource.Type, "DELETE_COMPLETE", null, null);
                Forget();
                return true;
            }
            if (retain(resource))
            {
                run.Event(logicalId, resource.PhysicalId, resource.Type, "DELETE_SKIPPED", null, null);
                Forget();
                return true;
            }
            run.Event(logicalId, resource.PhysicalId, resource.Type, "DELETE_IN_PROGRESS", null, null);
            try
            {
                await _providers[resource.Type].DeleteAsync(run.Request(logicalId, Object(resource.Properties), resource.PhysicalId, ProvisionRequest.NewSuffix(),
                    previousAttributes: Object(resource.Attributes)), Stopping);
            }
            catch (ServiceException e) when (e.NotFound)
            {
            }
            catch (Exception e) when (e is ServiceException or CloudFormationException or HttpRequestException)
            {
                var reason = HandlerMessage(e);
                if (!old)
                {
                    run.Save((run.Resource(logicalId) ?? resource) with { Status = "DELETE_FAILED", StatusReason = reason, UpdatedAt = Now });
                }
                run.Event(logicalId, resource.PhysicalId, resource.Type, "DELETE_FAILED", reason, null);
                LogResourceFailed(run.Stack.StackName, logicalId, resource.Type, "DELETE_FAILED", reason);
                return false;
            }
            run.Event(logicalId, resource.PhysicalId, resource.Type, "DELETE_COMPLETE", null, null);
            Forget();
            return true;
        }, stopOnFailure: false);
    }

    // ---- shared -------------------------------------------------------------------------------------------------------

    private (StackTemplate Template, Intrinsics Intrinsics) Live(StackRun run, string processed, IEnumerable<StackParameter> parameters)
    {
        var template = StackTemplate.Parse(Object(processed));
        return (template, Context(template, run.Stack.StackName, run.Stack.StackId, parameters, run.Values, allowUnresolved: false));
    }

    /// <summary>Evaluates and stores the outputs and exports; the failure's reason, or null.</summary>
    private string? Outputs(StackRun run, StackTemplate template, Intrinsics intrinsics)
    {
        var outputs = new List<StackOutput>();
        try
        {
            foreach (var (key, node) in template.Outputs)
            {
                var output = (JsonObject)node!;
                if (output["Condition"] is { } condition && !intrinsics.Condition(CloudFormation.Intrinsics.Stringify(condition)))
                {
                    continue;
                }
                var value = CloudFormation.Intrinsics.Stringify(intrinsics.Resolve(output["Value"]));
                var export = output["Export"] is JsonObject e && e["Name"] is { } name ? CloudFormation.Intrinsics.Stringify(intrinsics.Resolve(name)) : null;
                outputs.Add(new StackOutput(key, value, output["Description"] is { } d ? CloudFormation.Intrinsics.Stringify(d) : null, export));
            }
        }
        catch (CloudFormationException e)
        {
            return e.Message;
        }
        var exports = _store.Exports();
        foreach (var output in outputs.Where(static o => o.ExportName is not null))
        {
            if (exports.FirstOrDefault(e => e.Name == output.ExportName && e.StackId != run.Stack.StackId) is { Name: not null } taken)
            {
                var owner = _store.FindStack(taken.StackId)?.StackName ?? taken.StackId;
                return $"Export with name {output.ExportName} is already exported by stack {owner}";
            }
        }
        var kept = outputs.Where(static o => o.ExportName is not null).Select(static o => o.ExportName!).ToHashSet(StringComparer.Ordinal);
        foreach (var (name, stackId, value) in exports.Where(e => e.StackId == run.Stack.StackId))
        {
            var newValue = outputs.FirstOrDefault(o => o.ExportName == name)?.Value;
            if ((!kept.Contains(name) || newValue != value)
                && _store.AllStacks().FirstOrDefault(s => s.DeletedAt is null && s.StackId != stackId && s.Imports.Contains(name)) is { } importer)
            {
                return kept.Contains(name)
                    ? $"Cannot update export {name} as it is in use by {importer.StackName}"
                    : $"Cannot delete export {name} as it is in use by {importer.StackName}";
            }
        }
        run.SaveStack(run.Stack with { Outputs = outputs });
        _store.SetExports(run.Stack.StackId, outputs.Where(static o => o.ExportName is not null).Select(static o => (o.ExportName!, o.Value)));
        return null;
    }

    /// <summary>
    /// Runs <paramref name="action"/> for every node once all its prerequisites succeeded, as many at once as are ready.
    /// With <paramref name="stopOnFailure"/> nothing new starts after a failure. Returns the nodes that failed.
    /// </summary>
    internal static async Task<List<string>> RunGraphAsync(List<string> nodes, IReadOnlyDictionary<string, List<string>> prerequisites, Func<string, Task<bool>> action,
        bool stopOnFailure)
    {
        var pending = new List<string>(nodes);
        var succeeded = new HashSet<string>(StringComparer.Ordinal);
        var failed = new List<string>();
        var running = new Dictionary<Task<bool>, string>();
        while (true)
        {
            if (!(stopOnFailure && failed.Count > 0))
            {
                foreach (var node in pending.Where(n => prerequisites[n].All(p => succeeded.Contains(p) || !nodes.Contains(p))).ToList())
                {
                    pending.Remove(node);
                    running[Task.Run(() => action(node))] = node;
                }
            }
            if (running.Count == 0)
            {
                break;
            }
            var finished = await Task.WhenAny(running.Keys);
            var id = running[finished];
            running.Remove(finished);
            if (await finished)
            {
                succeeded.Add(id);
            }
            else
            {
                failed.Add(id);
            }
        }
        return failed;
    }
}
