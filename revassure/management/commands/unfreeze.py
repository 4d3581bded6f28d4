from revassure.management.commands.freeze import Command as FreezeCommand


class Command(FreezeCommand):
    help = (
        "Lift the freeze of manual balance changes; approved requests that waited run now if still "
        "valid. The actor is --actor USERNAME, or REVASSURE_ACTOR from the environment."
    )
    frozen = False
